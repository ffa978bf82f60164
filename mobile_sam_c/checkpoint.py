"""checkpoint.py - reading MobileSAM weights (torch.save zip or legacy files, safetensors, npz, mappings) as numpy
arrays without PyTorch, through a restricted unpickler so that loading a checkpoint can never run its code."""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import pickletools
import struct
import zipfile
from typing import IO, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "load_state_dict",
    "validate_state_dict",
    "default_max_bytes",
    "HEAD_PREFIXES",
]

Source = Union[str, "os.PathLike[str]", Mapping[str, Any]]
SpecEntry = Tuple[str, Sequence[int], str]

# The TinyViT classifier head, present in MobileSAM's checkpoint but unused by SAM.
HEAD_PREFIXES: Tuple[str, ...] = ("image_encoder.norm_head.", "image_encoder.head.")

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER (legacy format)
_TORCH_LEGACY_PROTOCOL = 1001
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_MAX_BROADCAST = 1 << 24  # elements a stride-0 / overlapping view may expand to beyond its storage
_MAX_PICKLE = 16 * 1024 * 1024  # data.pkl of a state dict is a few hundred KB
_MAX_MEMO = 1 << 20  # pickle memo slots (the C unpickler sizes its memo table by the largest index)
_MAX_OPCODES = 1 << 20  # a state dict of 1,000 tensors takes ~30,000; each opcode can make an object
_MAX_BYTEORDER = 16  # "little" / "big"
_CHUNK = 1 << 20  # compressed members are inflated this much at a time, never more
_LIST_LIMIT = 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A pickle that refers to a global a state dict never needs (it could run code); never loaded."""


# --------------------------------------------------------------------------------------------
# Pieces the restricted unpickler builds: storage types, storages, and tensors still to be read.

class _Refuses:
    """Base of every object of ours a pickle can reach. pickle's BUILD calls __setstate__ when an
    object has one, so this refusal is the only way a checkpoint could set attributes on it; with
    __slots__ (no __dict__) nothing else can. A load therefore cannot change what a later one does."""
    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(
            f"checkpoint tries to set the state of a {type(self).__name__.lstrip('_')} "
            "(a BUILD opcode a state dict never needs); refusing to load it")


class _StorageType(_Refuses):
    """A storage class named by the pickle (torch.FloatStorage ...): a fresh copy per load."""
    __slots__ = ("name", "dtype", "bf16")

    def __init__(self, name: str, dtype: np.dtype, bf16: bool = False):
        self.name, self.dtype, self.bf16 = name, np.dtype(dtype), bool(bf16)

    def same(self, other: "_StorageType") -> bool:
        return (self.name, self.dtype, self.bf16) == (other.name, other.dtype, other.bf16)


# name -> (element type as stored, little-endian; bf16 is read as uint16, bf16)
_STORAGE_TYPES: Dict[str, Tuple[str, bool]] = {
    "FloatStorage": ("<f4", False), "DoubleStorage": ("<f8", False), "HalfStorage": ("<f2", False),
    "BFloat16Storage": ("<u2", True), "LongStorage": ("<i8", False), "IntStorage": ("<i4", False),
    "ShortStorage": ("<i2", False), "CharStorage": ("i1", False), "ByteStorage": ("u1", False),
    "BoolStorage": ("?", False),
}


class _Budget:
    """The bytes one load may commit (storages, members inflated, arrays made), charged before
    the memory is taken so a small hostile file cannot make the loader allocate gigabytes."""

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise CheckpointError(
                f"{what} needs {nbytes} bytes, more than this checkpoint's memory limit of "
                f"{self.limit} bytes allows ({self.used} already taken); a MobileSAM checkpoint "
                "needs far less (pass max_bytes to load_state_dict to raise the limit)")
        self.used += nbytes


class _Storage(_Refuses):
    """One storage of a checkpoint: numel elements of stype, read on first use by a loader."""
    __slots__ = ("key", "stype", "numel", "_loader", "_data")

    def __init__(self, key: str, stype: _StorageType, numel: int, loader: Callable[[], np.ndarray]):
        self.key, self.stype, self.numel = key, stype, numel
        self._loader = loader
        self._data: Optional[np.ndarray] = None

    def data(self) -> np.ndarray:
        if self._data is None:
            arr = self._loader()
            if arr.ndim != 1 or arr.shape[0] < self.numel:
                raise CheckpointError(
                    f"storage {self.key!r} holds {arr.shape[0]} elements, expected {self.numel}")
            self._data = arr[: self.numel]
        return self._data


class _StorageView(_Refuses):
    """A legacy-format view of elements [offset, offset + numel) of a root storage."""
    __slots__ = ("key", "stype", "numel", "_root", "_offset")

    def __init__(self, root: _Storage, offset: int, numel: int):
        self.key, self.stype, self.numel = root.key, root.stype, numel
        self._root, self._offset = root, offset
        self._check()

    def _check(self) -> None:
        root, offset, numel = self._root, self._offset, self.numel
        if offset < 0 or numel < 0 or offset + numel > root.numel:
            raise CheckpointError(
                f"storage view [{offset}, {offset + numel}) lies outside storage {root.key!r} "
                f"of {root.numel} elements")

    def data(self) -> np.ndarray:
        self._check()  # again when used, not only when built
        base = self._root.data()
        out = base[self._offset: self._offset + self.numel]
        if out.shape[0] != self.numel:
            raise CheckpointError(f"storage view of {self.numel} elements lies outside storage {self.key!r}")
        return out


_AnyStorage = Union[_Storage, _StorageView]


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, any byte order) as an exactly equal float32 array."""
    wide = np.array(bits, dtype=np.uint32, order="C")
    wide <<= np.uint32(16)
    return wide.view(np.float32)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _TensorRef(_Refuses):
    """A tensor described by the pickle (storage, offset, size, stride), materialised later
    (in the legacy format the storages' bytes come after the pickle)."""
    __slots__ = ("storage", "offset", "size", "stride", "negate")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, negate: bool = False):
        self._check(storage, offset, size, stride)
        self.storage: _AnyStorage = storage
        self.offset, self.size, self.stride, self.negate = offset, size, stride, bool(negate)

    @staticmethod
    def _check(storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, (_Storage, _StorageView)):
            raise CheckpointError(f"a tensor is built from a {type(storage).__name__}, not a storage")
        if not _is_int(offset):
            raise CheckpointError(f"a tensor's storage offset is a {type(offset).__name__}, not an int")
        if not isinstance(size, tuple) or not all(_is_int(s) for s in size):
            raise CheckpointError(f"a tensor's size {size!r} is not a tuple of ints")
        if not isinstance(stride, tuple) or not all(_is_int(s) for s in stride):
            raise CheckpointError(f"a tensor's stride {stride!r} is not a tuple of ints")
        if len(size) != len(stride):
            raise CheckpointError(f"a tensor's size {size} and stride {stride} differ in length")

    def materialize(self, name: str, budget: _Budget) -> np.ndarray:
        self._check(self.storage, self.offset, self.size, self.stride)  # again when used
        st = self.storage
        size, stride, offset = self.size, self.stride, self.offset
        where = f"tensor {name!r} (size {list(size)}, stride {list(stride)}, offset {offset})"
        if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise CheckpointError(f"{where} has a negative size, stride or offset")
        count = 1
        for s in size:
            count *= s
        stype = st.stype
        if count == 0:
            raw = np.empty(size, dtype=stype.dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= st.numel:
                raise CheckpointError(
                    f"{where} reaches element {last} of storage {st.key!r}, which has only "
                    f"{st.numel} elements")
            if count > max(st.numel, _MAX_BROADCAST):
                raise CheckpointError(
                    f"{where} would expand storage {st.key!r} of {st.numel} elements to {count}")
            budget.charge(count * (4 if stype.bf16 else stype.dtype.itemsize), where)
            base = st.data()
            if last >= base.shape[0]:  # the data as read, not only the declared size
                raise CheckpointError(f"{where} reaches past the {base.shape[0]} elements read for {st.key!r}")
            item = base.dtype.itemsize
            raw = np.lib.stride_tricks.as_strided(  # in bounds: checked above
                base[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
        if stype.bf16:
            out = _bf16_to_f32(raw)
        else:
            out = np.array(raw, dtype=raw.dtype.newbyteorder("="), order="C", copy=True)
        if self.negate:
            if out.dtype.kind not in "fi":
                raise CheckpointError(f"{where} is a negated view of a {out.dtype} storage")
            np.negative(out, out=out)
        return out


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _TensorRef:
    negate = False
    if metadata:
        if not isinstance(metadata, dict):
            raise CheckpointError(f"tensor metadata {metadata!r} is not a dict")
        for k, v in metadata.items():
            if k == "neg":
                negate = bool(v)
            elif v:
                raise CheckpointError(f"tensors with the {k!r} bit set are not supported")
    return _TensorRef(storage, storage_offset, size, stride, negate)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    if not isinstance(data, _TensorRef):
        raise CheckpointError(f"a parameter is built from a {type(data).__name__}, not a tensor")
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: Any, backward_hooks: Any,
                                  state: Any) -> Any:
    return _rebuild_parameter(data, requires_grad, backward_hooks)


class _StateDict(dict):  # a plain dict keeps insertion order too
    """The OrderedDict a state dict is pickled as. torch pickles its _metadata (version numbers)
    with BUILD; that state is dropped, never set as attributes."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeCheckpointError(
                f"checkpoint sets a {type(state).__name__} as the state of a dict; refusing to load it")


class _Function(_Refuses):
    """A stand-in for a global function the pickle may call; made per load, it has no
    attributes a pickle could change (the real function's __defaults__ stay out of reach)."""
    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]):
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


_ALLOWED_FUNCTIONS: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


def _stand_in(module: str, name: str) -> Any:
    """A new object of ours for an allowed global, or None."""
    fn = _ALLOWED_FUNCTIONS.get((module, name))
    if fn is not None:
        return _Function(fn)
    if module == "torch" and name in _STORAGE_TYPES:
        dtype, bf16 = _STORAGE_TYPES[name]
        return _StorageType(name, np.dtype(dtype), bf16)
    return None


def _scan_pickle(data: bytes, what: str) -> None:
    """Read a pickle's opcodes without running them and refuse what would take memory out of
    proportion to its size: memo indices the C unpickler would allocate a table for, and more
    opcodes (each may make an object of ~50 bytes from one byte) than a state dict needs."""
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count >= _MAX_OPCODES:
                raise CheckpointError(f"{what} has more than {_MAX_OPCODES} opcodes; a state dict needs far fewer")
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (_is_int(arg) and 0 <= arg < _MAX_MEMO):
                raise CheckpointError(
                    f"{what} stores to memo slot {arg!r}; a state dict needs fewer than {_MAX_MEMO}")
    except CheckpointError:
        raise
    except Exception as e:  # pickletools: truncated or unknown opcode
        raise CheckpointError(f"{what} is not a valid pickle ({type(e).__name__}: {e})") from None


def _unpickle(data: bytes, what: str, load_storage: Optional[Callable[[tuple], "_AnyStorage"]] = None) -> Any:
    if len(data) > _MAX_PICKLE:
        raise CheckpointError(f"{what} has {len(data)} bytes; a state dict's pickle is far smaller")
    _scan_pickle(data, what)
    return _RestrictedUnpickler(io.BytesIO(data), load_storage).load()


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict of tensors needs; storages go through load_storage."""

    def __init__(self, file: IO[bytes],
                 load_storage: Optional[Callable[[tuple], _AnyStorage]] = None):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        found = _stand_in(module, name)
        if found is not None:
            return found
        what = f"{module}.{name}"
        if module == "torch" or module.startswith("torch."):
            raise UnsafeCheckpointError(
                f"checkpoint refers to global {what!r}, which this reader does not support (it "
                "reads state dicts of plain float/int tensors only); refusing to load it")
        raise UnsafeCheckpointError(
            f"checkpoint refers to global {what!r}, which a state dict never needs; "
            "refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise CheckpointError(f"unexpected persistent id {pid!r} in a plain pickle")
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise CheckpointError(f"persistent id {pid!r} is not a storage reference")
        return self._load_storage(pid)


def _storage_fields(pid: tuple, n: int) -> tuple:
    if len(pid) != n:
        raise CheckpointError(f"storage reference {pid!r} has {len(pid)} fields, expected {n}")
    stype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(stype, _StorageType):
        raise CheckpointError(f"storage reference {pid!r} names no known storage type")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not isinstance(key, str):
        raise CheckpointError(f"storage key {key!r} is not a string")
    if not _is_int(numel) or numel < 0:
        raise CheckpointError(f"storage {key!r} has an invalid element count {numel!r}")
    return stype, key, numel


def _collect(obj: Any, budget: _Budget) -> Dict[str, np.ndarray]:
    """The state dict in an unpickled object: a dict of tensors, possibly under 'state_dict' or 'model'."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"the checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    if obj and not all(isinstance(v, _TensorRef) for v in obj.values()):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, dict) and inner and all(isinstance(v, _TensorRef)
                                                         for v in inner.values()):
                obj = inner
                break
    out: Dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"the checkpoint has a key {k!r} that is not a string")
        if not isinstance(v, _TensorRef):
            raise CheckpointError(f"entry {k!r} of the checkpoint is a {type(v).__name__}, not a tensor")
        out[k] = v.materialize(k, budget)
    return out


# --------------------------------------------------------------------------------------------
# Formats.

def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    pos = f.tell()
    left = f.seek(0, io.SEEK_END) - pos
    f.seek(pos)
    if n > left:  # checked before reading: a forged size must not make us allocate it
        raise CheckpointError(f"file ends inside {what} ({left} of {n} bytes)")
    b = f.read(n)
    if len(b) != n:
        raise CheckpointError(f"file ends inside {what} ({len(b)} of {n} bytes)")
    return b


def _frombuffer(data: Union[bytes, bytearray], dtype: np.dtype) -> np.ndarray:
    n = len(data) // dtype.itemsize
    return np.frombuffer(data, dtype=dtype, count=n)


def _read_stream(stream: IO[bytes], nbytes: int, what: str, whole: bool = True) -> bytearray:
    """nbytes from an (inflating) stream, _CHUNK at a time so that no more is ever inflated; with
    whole, the stream must end there (zipfile checks the CRC at the end)."""
    out = bytearray(nbytes)
    view = memoryview(out)
    got = 0
    while got < nbytes:
        chunk = stream.read(min(_CHUNK, nbytes - got))
        if not chunk:
            raise CheckpointError(f"{what} ends after {got} of {nbytes} bytes")
        view[got: got + len(chunk)] = chunk
        got += len(chunk)
    if whole and stream.read(1):
        raise CheckpointError(f"{what} holds more than the {nbytes} bytes expected")
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int, budget: _Budget,
                 what: str) -> bytearray:
    """A zip member whose header declares exactly nbytes, charged to the budget before it is read."""
    if info.file_size != nbytes:
        raise CheckpointError(f"{what} holds {info.file_size} bytes, expected {nbytes}")
    budget.charge(nbytes, what)
    with zf.open(info) as m:
        return _read_stream(m, nbytes, what)


def _load_torch_zip(zf: zipfile.ZipFile, names: List[str], pkl: str, budget: _Budget) -> Dict[str, np.ndarray]:
    prefix = pkl[: -len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names:
        info = zf.getinfo(prefix + "byteorder")
        if info.file_size > _MAX_BYTEORDER:
            raise CheckpointError(f"{prefix}byteorder claims {info.file_size} bytes; it holds 'little' or 'big'")
        bo = _read_member(zf, info, info.file_size, budget, f"member {prefix}byteorder")
        bo_text = bytes(bo).decode("ascii", "replace").strip()
        if bo_text not in ("little", "big"):
            raise CheckpointError(f"unknown byte order {bo_text!r} in {prefix}byteorder")
        order = "<" if bo_text == "little" else ">"
    storages: Dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _AnyStorage:
        stype, key, numel = _storage_fields(pid, 5)
        if key in storages:
            st = storages[key]
            if not st.stype.same(stype) or st.numel != numel:
                raise CheckpointError(f"storage {key!r} is referenced with two different types or sizes")
            return st
        member = f"{prefix}data/{key}"
        dtype = stype.dtype.newbyteorder(order) if stype.dtype.itemsize > 1 else stype.dtype
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise CheckpointError(f"storage member {member!r} is missing from the archive") from None
        nbytes = numel * dtype.itemsize
        if info.file_size < nbytes:
            raise CheckpointError(
                f"storage member {member!r} holds {info.file_size} bytes, expected {nbytes}")
        budget.charge(nbytes, f"storage {key!r} of {numel} elements")

        def loader() -> np.ndarray:
            with zf.open(info) as m:  # a member may hold more than the storage: read what it needs
                return _frombuffer(_read_stream(m, nbytes, f"storage member {member!r}", whole=False), dtype)

        st = storages[key] = _Storage(key, stype, numel, loader)
        return st

    info = zf.getinfo(pkl)
    if info.file_size > _MAX_PICKLE:
        raise CheckpointError(f"{pkl} claims {info.file_size} bytes; a state dict's is far smaller")
    obj = _unpickle(bytes(_read_member(zf, info, info.file_size, budget, f"member {pkl}")), pkl, load_storage)
    return _collect(obj, budget)


def _load_zip(f: IO[bytes], budget: _Budget) -> Dict[str, np.ndarray]:
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if pkls:
            first_dir = names[0].split("/", 1)[0] + "/" if "/" in names[0] else ""
            pkl = first_dir + "data.pkl" if first_dir + "data.pkl" in pkls else pkls[0]
            try:
                return _load_torch_zip(zf, names, pkl, budget)
            except UnsafeCheckpointError as e:
                if any(n.startswith(pkl[: -len("data.pkl")] + "code/") for n in names):
                    raise UnsafeCheckpointError(
                        f"{e} (this looks like a TorchScript archive from torch.jit.save; save "
                        "model.state_dict() with torch.save instead)") from None
                raise
        if names and all(n.endswith(".npy") for n in names):
            return _load_npz(zf, names, budget)
    listed = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "none"
    raise CheckpointError("zip archive has no data.pkl (not a torch.save checkpoint) and is not an "
                          f".npz archive; its members: {listed}")


def _load_npz(zf: zipfile.ZipFile, names: List[str], budget: _Budget) -> Dict[str, np.ndarray]:
    """An .npz archive, each .npy member's header read first and its data size charged and
    checked against the member's before any of it is inflated (np.load would trust the header)."""
    from numpy.lib import format as npy

    out: Dict[str, np.ndarray] = {}
    for member in names:
        key = member[: -len(".npy")]
        info = zf.getinfo(member)
        with zf.open(info) as m:
            version = npy.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(m)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy.read_array_header_2_0(m)
            else:
                raise CheckpointError(f"array {key!r} has .npy format version {version}, not 1.0-3.0")
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
                raise CheckpointError(f"array {key!r} has dtype {dtype}, not a numeric type")
            if not all(_is_int(n) and n >= 0 for n in shape):
                raise CheckpointError(f"array {key!r} has an invalid shape {shape!r}")
            count = 1
            for n in shape:
                count *= n
            nbytes = count * dtype.itemsize
            header = m.tell()
            if info.file_size != header + nbytes:
                raise CheckpointError(
                    f"array {key!r} of shape {shape} and dtype {dtype} needs {nbytes} bytes, its "
                    f"member holds {info.file_size - header}")
            budget.charge(2 * nbytes, f"array {key!r} of shape {tuple(shape)}")  # read + native copy
            data = _read_stream(m, nbytes, f"array {key!r}")
        a = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
        out[key] = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
    return out


def _pickle_at(f: IO[bytes], what: str) -> bytes:
    """The bytes of the pickle that starts at f's position (found by reading its opcodes, never
    running them); f is left just after it."""
    start = f.tell()
    try:
        for count, _ in enumerate(pickletools.genops(f)):
            if f.tell() - start > _MAX_PICKLE or count >= _MAX_OPCODES:
                raise CheckpointError(f"{what} is longer than {_MAX_PICKLE} bytes or {_MAX_OPCODES} "
                                      "opcodes; a state dict's is far smaller")
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{what} is not a valid pickle ({type(e).__name__}: {e})") from None
    end = f.tell()
    f.seek(start)
    data = f.read(end - start)
    return data


def _load_legacy(f: IO[bytes], budget: _Budget) -> Dict[str, np.ndarray]:
    magic = _unpickle(_pickle_at(f, "the magic number"), "the magic number")
    if not _is_int(magic) or magic != _TORCH_MAGIC:
        raise CheckpointError("a pickle file that is not a torch.save checkpoint (no magic number)")
    proto = _unpickle(_pickle_at(f, "the protocol version"), "the protocol version")
    if proto != _TORCH_LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy torch.save protocol {proto!r}")
    sys_info = _unpickle(_pickle_at(f, "the system info"), "the system info")
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        # The legacy writer stores storages little-endian on any machine, but refuse what we
        # have never seen rather than guess.
        raise CheckpointError("legacy checkpoint written on a big-endian machine is not supported")

    roots: Dict[str, _Storage] = {}
    raw: Dict[str, np.ndarray] = {}

    def load_storage(pid: tuple) -> _AnyStorage:
        stype, key, numel = _storage_fields(pid, 6)
        root = roots.get(key)
        if root is None:
            budget.charge(numel * stype.dtype.itemsize, f"storage {key!r} of {numel} elements")
            root = roots[key] = _Storage(key, stype, numel, lambda k=key: raw[k])
        elif not root.stype.same(stype) or root.numel != numel:
            raise CheckpointError(f"storage {key!r} is referenced with two different types or sizes")
        view = pid[5]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
            raise CheckpointError(f"storage view {view!r} is malformed")
        return _StorageView(root, view[1], view[2])

    obj = _unpickle(_pickle_at(f, "the tensor pickle"), "the tensor pickle", load_storage)
    keys = _unpickle(_pickle_at(f, "the storage key list"), "the storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("the list of storage keys after the pickle is malformed")
    for key in keys:
        root = roots.get(key)
        if root is None:
            raise CheckpointError(f"storage {key!r} has data but no tensor refers to it")
        (count,) = struct.unpack("<q", _read_exact(f, 8, f"the size of storage {key!r}"))
        if count != root.numel:
            raise CheckpointError(f"storage {key!r} holds {count} elements, expected {root.numel}")
        if key in raw:
            raise CheckpointError(f"storage {key!r} has data twice in the file")
        nbytes = count * root.stype.dtype.itemsize
        raw[key] = _frombuffer(_read_exact(f, nbytes, f"storage {key!r}"), root.stype.dtype)
    missing = [k for k in roots if k not in raw]
    if missing:
        raise CheckpointError(f"storage(s) {missing[:5]} have no data in the file")
    return _collect(obj, budget)


_SAFETENSORS_DTYPES: Dict[str, Tuple[np.dtype, bool]] = {
    "F64": (np.dtype("<f8"), False), "F32": (np.dtype("<f4"), False),
    "F16": (np.dtype("<f2"), False), "BF16": (np.dtype("<u2"), True),
    "I64": (np.dtype("<i8"), False), "I32": (np.dtype("<i4"), False),
    "I16": (np.dtype("<i2"), False), "I8": (np.dtype("i1"), False),
    "U64": (np.dtype("<u8"), False), "U32": (np.dtype("<u4"), False),
    "U16": (np.dtype("<u2"), False), "U8": (np.dtype("u1"), False),
    "BOOL": (np.dtype("?"), False),
}


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise CheckpointError(f"safetensors header names {k!r} twice")
        d[k] = v
    return d


def _load_safetensors(f: IO[bytes], file_size: int, budget: _Budget) -> Dict[str, np.ndarray]:
    (n,) = struct.unpack("<Q", _read_exact(f, 8, "the safetensors header length"))
    if n > min(file_size - 8, _MAX_SAFETENSORS_HEADER):
        raise CheckpointError(f"safetensors header length {n} exceeds the file ({file_size} bytes)")
    try:
        header = json.loads(_read_exact(f, n, "the safetensors header").decode("utf-8"),
                            object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object")
    budget.charge(file_size - f.tell(), "the safetensors data")
    data = f.read()
    out: Dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)):
            raise CheckpointError(f"safetensors entry {name!r} is malformed: {entry!r}")
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"safetensors entry {name!r} has unsupported dtype {entry['dtype']!r}")
        dtype, bf16 = _SAFETENSORS_DTYPES[entry["dtype"]]
        shape, offs = entry["shape"], entry["data_offsets"]
        if not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"safetensors entry {name!r} has an invalid shape {shape!r}")
        if len(offs) != 2 or not all(_is_int(o) for o in offs) or not 0 <= offs[0] <= offs[1] <= len(data):
            raise CheckpointError(
                f"safetensors entry {name!r} has data offsets {offs!r} outside the {len(data)} data bytes")
        count = 1
        for s in shape:
            count *= s
        if offs[1] - offs[0] != count * dtype.itemsize:
            raise CheckpointError(
                f"safetensors entry {name!r} of shape {shape} and dtype {entry['dtype']} needs "
                f"{count * dtype.itemsize} bytes, its offsets span {offs[1] - offs[0]}")
        budget.charge(count * (4 if bf16 else dtype.itemsize), f"safetensors entry {name!r}")
        a = np.frombuffer(data, dtype=dtype, count=count, offset=offs[0]).reshape(shape)
        if bf16:
            out[name] = _bf16_to_f32(a)
        else:
            out[name] = np.array(a, dtype=dtype.newbyteorder("="), order="C")
    return out


def _load_file(f: IO[bytes], file_size: int, budget: _Budget) -> Dict[str, np.ndarray]:
    head = f.read(16)
    f.seek(0)
    if not head:
        raise CheckpointError("the file is empty")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _load_zip(f, budget)
    if head[:2] == b"\x80\x02" or (head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5):
        return _load_legacy(f, budget)
    if len(head) >= 9 and head[8:9] == b"{":
        return _load_safetensors(f, file_size, budget)
    if head[:6] == b"\x93NUMPY":
        raise CheckpointError("a single .npy array, not a dict of named tensors")
    f.seek(257)
    if f.read(5) == b"ustar":
        raise CheckpointError("the tar-based torch.save format of PyTorch < 0.4 is not supported")
    raise CheckpointError(
        f"unrecognised format (first bytes {head[:8]!r}); expected a torch.save checkpoint, "
        ".safetensors or .npz file")


# --------------------------------------------------------------------------------------------
# Public API.

def _to_numpy(value: Any, name: str) -> np.ndarray:
    """A numpy copy of an array-like: numpy arrays, torch tensors (without importing torch), __array__."""
    try:
        if all(hasattr(value, a) for a in ("detach", "cpu", "numpy")):  # a torch tensor
            t = value.detach().cpu()
            if "bfloat16" in str(getattr(t, "dtype", "")):
                t = t.float()  # exact; numpy has no bfloat16
            if hasattr(t, "resolve_neg"):
                t = t.resolve_neg()
            value = t.numpy()
        a = np.array(value, copy=True)
    except Exception as e:
        raise CheckpointError(f"entry {name!r} ({type(value).__name__}) is not array-like: {e}") from None
    if a.dtype.kind not in "biuf":
        raise CheckpointError(f"entry {name!r} has dtype {a.dtype}, not a numeric type")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


@functools.lru_cache(maxsize=1)
def default_max_bytes() -> int:
    """The bytes a checkpoint file may make the loader commit: 32 per parameter of the model
    (float64 storages plus their float64 arrays, twice over) and 64 MiB for anything else (the
    unused classifier head, pickles, headers). The official file needs about a fifth of it."""
    from . import _C

    params = 0
    for _, shape, _ in _C.weight_spec():
        n = 1
        for d in shape:
            n *= int(d)
        params += n
    return 32 * params + (64 << 20)


def load_state_dict(source: Source, max_bytes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Named arrays from a checkpoint file (format found from its content: torch.save zip or
    legacy, safetensors, npz) or from a mapping of names to array-likes (numpy arrays, torch
    tensors, anything with __array__). Arrays keep their dtype except bfloat16 (-> float32).
    Raises CheckpointError (a ValueError) naming the file for anything corrupt, truncated or
    unsafe; a pickle referring to any global beyond tensor rebuilding is refused unexecuted.
    A file may make the loader commit at most max_bytes (default: default_max_bytes(), from the
    model's parameter count); this is checked before the memory is taken. A file, hostile or not,
    never changes what a later load returns."""
    if isinstance(source, Mapping):
        out: Dict[str, np.ndarray] = {}
        for k, v in source.items():
            if not isinstance(k, str):
                raise CheckpointError(f"state dict key {k!r} is not a string")
            out[k] = _to_numpy(v, k)
        return out
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise TypeError(f"source must be a path or a mapping of arrays, not {type(source).__name__}")
    path = os.fsdecode(source)
    budget = _Budget(default_max_bytes() if max_bytes is None else max_bytes)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            return _load_file(f, size, budget)
        except CheckpointError as e:
            raise type(e)(f"cannot load checkpoint '{path}': {e}") from None
        except Exception as e:  # zipfile, struct, pickle, EOF, numpy, memory ...: all mean corrupt
            raise CheckpointError(
                f"cannot load checkpoint '{path}': corrupt or truncated file "
                f"({type(e).__name__}: {e})") from e


def _fmt_shape(shape: Tuple[int, ...]) -> str:
    return str(tuple(int(s) for s in shape))


def _listing(items: List[str], what: str) -> str:
    shown = ", ".join(f'"{k}"' for k in items[:_LIST_LIMIT])
    more = f", ... and {len(items) - _LIST_LIMIT} more ({len(items)} in all)" if len(items) > _LIST_LIMIT else ""
    return f"{what}: {shown}{more}."


def validate_state_dict(state: Mapping[str, Any], spec: Iterable[SpecEntry],
                        ignore_prefixes: Sequence[str] = HEAD_PREFIXES) -> Dict[str, np.ndarray]:
    """Check state against spec [(name, shape, dtype)] like PyTorch's strict load_state_dict and
    return C-contiguous arrays of exactly the spec's names and dtypes (float16/float64 become
    float32, narrower ints become int64). All problems - missing keys, unexpected keys (except
    those under ignore_prefixes), shape and dtype mismatches, NaN/inf - are raised together as
    one CheckpointError."""
    entries: List[Tuple[str, Tuple[int, ...], np.dtype]] = []
    for name, shape, dtype in spec:
        entries.append((str(name), tuple(int(s) for s in shape),
                        np.dtype(str(dtype).replace("torch.", ""))))
    wanted = {n for n, _, _ in entries}
    missing = [n for n, _, _ in entries if n not in state]
    unexpected = [k for k in state if k not in wanted and not str(k).startswith(tuple(ignore_prefixes))]
    mismatches: List[str] = []
    nonfinite: List[str] = []
    out: Dict[str, np.ndarray] = {}
    for name, shape, dtype in entries:
        if name not in state:
            continue
        try:
            a = _to_numpy(state[name], name)
        except CheckpointError as e:
            mismatches.append(str(e))
            continue
        if shape == () and a.shape == (1,):  # as PyTorch: a 1-element vector fills a 0-d tensor
            a = a.reshape(())
        if a.shape != shape:
            mismatches.append(
                f"size mismatch for {name}: copying a param with shape {_fmt_shape(a.shape)} from "
                f"checkpoint, the shape in current model is {_fmt_shape(shape)}.")
            continue
        if dtype.kind == "f":
            ok = a.dtype.kind == "f"
        elif dtype.kind in "iu":
            ok = a.dtype.kind in "iu" and np.can_cast(a.dtype, dtype, "safe")
        else:
            ok = a.dtype == dtype
        if not ok:
            mismatches.append(
                f"dtype mismatch for {name}: copying a param with dtype {a.dtype} from checkpoint, "
                f"the dtype in current model is {dtype}.")
            continue
        with np.errstate(over="ignore"):
            a = np.asarray(a, dtype=dtype, order="C")
        if dtype.kind == "f" and not np.isfinite(a).all():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(np.isinf(a).sum())
            nonfinite.append(f"non-finite values in {name}: {n_nan} NaN and {n_inf} inf "
                             f"of {a.size} elements (as {dtype}).")
            continue
        out[name] = a
    if missing or unexpected or mismatches or nonfinite:
        lines = ["Error(s) in loading state_dict for MobileSAM:"]
        if missing:
            lines.append("\t" + _listing(missing, "Missing key(s) in state_dict"))
        if unexpected:
            lines.append("\t" + _listing(unexpected, "Unexpected key(s) in state_dict"))
        for group, label in ((mismatches, "shape/dtype mismatches"), (nonfinite, "non-finite tensors")):
            lines += ["\t" + m for m in group[:_LIST_LIMIT]]
            if len(group) > _LIST_LIMIT:
                lines.append(f"\t... and {len(group) - _LIST_LIMIT} more {label} ({len(group)} in all).")
        err = CheckpointError("\n".join(lines))
        err.missing_keys = missing  # type: ignore[attr-defined]
        err.unexpected_keys = unexpected  # type: ignore[attr-defined]
        err.mismatches = mismatches  # type: ignore[attr-defined]
        err.nonfinite = nonfinite  # type: ignore[attr-defined]
        raise err
    return out
