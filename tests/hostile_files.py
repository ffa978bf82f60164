"""hostile_files.py - writers of checkpoint files byte by byte (pickle opcodes, zip records,
legacy torch.save streams) for the hardening tests and fuzzers, with no torch needed: headers can lie."""
from __future__ import annotations

import struct
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# ---------------------------------------------------------------------------------------------
# Pickle opcodes (protocol 2), enough to write state dicts and the payloads of issue 14.

PROTO2 = b"\x80\x02"
MARK, STOP, POP, NONE, NEWTRUE, NEWFALSE = b"(", b".", b"0", b"N", b"\x88", b"\x89"
EMPTY_DICT, EMPTY_TUPLE, TUPLE, TUPLE2, TUPLE3 = b"}", b")", b"t", b"\x86", b"\x87"
SETITEM, SETITEMS, REDUCE, BUILD, BINPERSID = b"s", b"u", b"R", b"b", b"Q"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def integer(n: int) -> bytes:
    if 0 <= n < 1 << 31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def long_binput(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def state(slots: Dict[str, bytes]) -> bytes:
    """A BUILD argument (None, {name: value}): pickle then setattr()s each name."""
    d = EMPTY_DICT + b"".join(text(k) + v + SETITEM for k, v in slots.items())
    return NONE + d + TUPLE2


def persid_storage(key: str, numel: int, stype: str = "FloatStorage",
                   view: Optional[Tuple[int, int]] = None, legacy: bool = False) -> bytes:
    fields = [text("storage"), glob("torch", stype), text(key), text("cpu"), integer(numel)]
    if legacy:
        fields.append(NONE if view is None else tup(text(key + "v"), integer(view[0]), integer(view[1])))
    return tup(*fields) + BINPERSID


def tensor(storage: bytes, offset: int, size: Sequence[int], stride: Sequence[int]) -> bytes:
    """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) as torch writes it."""
    return (glob("torch._utils", "_rebuild_tensor_v2")
            + tup(storage, integer(offset), tup(*map(integer, size)), tup(*map(integer, stride)),
                  NEWFALSE, glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE)
            + REDUCE)


def state_dict(entries: Dict[str, bytes], prefix: bytes = b"") -> bytes:
    """PROTO, then prefix (payload opcodes that leave the stack as they found it), then the
    OrderedDict of entries."""
    body = glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
    if entries:
        body += MARK + b"".join(text(k) + v for k, v in entries.items()) + SETITEMS
    return PROTO2 + prefix + body + STOP


# ---------------------------------------------------------------------------------------------
# Zip archives written record by record, so a header may claim other sizes than its data has.

class Member:
    def __init__(self, name: str, data: bytes = b"", *, deflated: Optional[bytes] = None,
                 size: Optional[int] = None, crc: Optional[int] = None):
        """data stored as is, or deflated = a raw deflate stream whose inflated size and CRC the
        caller states (size, crc); size may lie."""
        self.name = name.encode()
        if deflated is None:
            self.method, self.payload = 0, data
            self.size = len(data) if size is None else size
            self.crc = zlib.crc32(data) if crc is None else crc
        else:
            self.method, self.payload = 8, deflated
            self.size, self.crc = int(size or 0), int(crc or 0)


def zip_bytes(members: List[Member]) -> bytes:
    out, central = bytearray(), bytearray()
    for m in members:
        offset = len(out)
        fields = struct.pack("<HHHHHIII", 20, 0, m.method, 0, 0x21, m.crc, len(m.payload), m.size)
        out += b"PK\x03\x04" + fields + struct.pack("<HH", len(m.name), 0) + m.name + m.payload
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHHHII", len(m.name), 0, 0, 0, 0, 0, offset) + m.name)
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + b"PK\x05\x06" + end)


def zeros_deflated(nbytes_mib: int, head: bytes = b"") -> Tuple[bytes, int, int]:
    """(raw deflate stream, size, crc32) of head then nbytes_mib MiB of zero bytes, built from
    full-flushed blocks (each stands alone, so one block repeated is a valid stream): a GiB of
    inflated data costs a 1 MB file and milliseconds to write."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH) if head else b""
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(nbytes_mib):
        crc = zlib.crc32(mib, crc)
    return first + block * nbytes_mib + c.flush(), len(head) + (nbytes_mib << 20), crc


def torch_zip(pickle_bytes: bytes, storages: Dict[str, bytes], byteorder: bytes = b"little",
              extra: Sequence[Member] = ()) -> bytes:
    members = [Member("archive/data.pkl", pickle_bytes), Member("archive/byteorder", byteorder)]
    members += [Member(f"archive/data/{k}", v) for k, v in storages.items()]
    return zip_bytes(members + list(extra))


def npy_header(shape: Tuple[int, ...], dtype: str = "<f4") -> bytes:
    """The .npy header (magic, version 1.0, dict) of an array of shape and dtype."""
    import io

    from numpy.lib import format as npy
    b = io.BytesIO()
    npy.write_array_header_1_0(b, {"descr": dtype, "fortran_order": False, "shape": shape})
    return b.getvalue()  # write_array_header_1_0 writes the magic too


# ---------------------------------------------------------------------------------------------
# Legacy (pre-zip) torch.save: five pickles, then each storage's element count and bytes.

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_bytes(main_pickle: bytes, storages: Dict[str, np.ndarray]) -> bytes:
    sys_info = PROTO2 + EMPTY_DICT + text("little_endian") + NEWTRUE + SETITEM + STOP
    keys = PROTO2 + b"]" + MARK + b"".join(text(k) for k in storages) + b"e" + STOP  # EMPTY_LIST, APPENDS
    out = PROTO2 + integer(LEGACY_MAGIC) + STOP + PROTO2 + integer(1001) + STOP + sys_info + main_pickle + keys
    for a in storages.values():
        out += struct.pack("<q", a.size) + a.astype("<f4").tobytes()
    return out


# ---------------------------------------------------------------------------------------------
# A good checkpoint in torch's zip layout (no torch needed) and what it must load as.

def good_zip() -> Tuple[bytes, Dict[str, np.ndarray]]:
    rng = np.random.default_rng(14)
    a = rng.standard_normal(12).astype("<f4")
    b = rng.standard_normal(5).astype("<f4")
    pkl = state_dict({"w": tensor(persid_storage("0", 12), 0, (3, 4), (4, 1)),
                      "b": tensor(persid_storage("1", 5), 0, (5,), (1,))})
    return torch_zip(pkl, {"0": a.tobytes(), "1": b.tobytes()}), {"w": a.reshape(3, 4), "b": b}
