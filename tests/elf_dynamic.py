"""elf_dynamic.py - what a shared object asks of the dynamic loader, read from its ELF file with no
tool (readelf may be absent): the libraries it needs (DT_NEEDED) and the symbols it exports."""
import struct
from typing import List, Tuple

SHT_SYMTAB, SHT_DYNAMIC, SHT_DYNSYM = 2, 6, 11
DT_NEEDED = 1
STB_GLOBAL, STB_WEAK, STV_DEFAULT = 1, 2, 0


def _sections(data: bytes) -> List[Tuple[int, int, int, int, int]]:
    """(type, offset, size, link, entsize) of every section of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out = []
    for i in range(shnum):
        _, typ, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        out.append((typ, off, size, link, entsize))
    return out


def _string(data: bytes, table_offset: int, index: int) -> str:
    end = data.index(b"\0", table_offset + index)
    return data[table_offset + index:end].decode()


def needed(path: str) -> List[str]:
    """The DT_NEEDED entries: the libraries the loader must find before the object can load."""
    data = open(path, "rb").read()
    secs = _sections(data)
    out = []
    for typ, off, size, link, _ in secs:
        if typ == SHT_DYNAMIC:
            strtab = secs[link][1]
            for e in range(off, off + size, 16):
                tag, val = struct.unpack_from("<qQ", data, e)
                if tag == DT_NEEDED:
                    out.append(_string(data, strtab, val))
    return out


def exported(path: str) -> List[str]:
    """Names of the defined global/weak symbols of default visibility in .dynsym."""
    data = open(path, "rb").read()
    secs = _sections(data)
    out = []
    for typ, off, size, link, entsize in secs:
        if typ == SHT_DYNSYM:
            strtab = secs[link][1]
            for e in range(off, off + size, entsize or 24):
                name, info, other, shndx = struct.unpack_from("<IBBH", data, e)
                if shndx != 0 and info >> 4 in (STB_GLOBAL, STB_WEAK) and other & 3 == STV_DEFAULT and name:
                    out.append(_string(data, strtab, name))
    return out
