"""GGUF headers in pure Python: magic, version, metadata and the tensor table — no tensor data, no torch.

Layout (GGUF v2/v3, little-endian; ggml ``docs/gguf.md``, gguf-py ``gguf_reader.py``)::

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   key (u64 length + utf-8) | value_type u32 | value
    tensor_count x   name | n_dims u32 | ne u64[n_dims] (ggml order: fastest first) | ggml_type u32 | offset u64
    padding to general.alignment (default 32)
    tensor data: each tensor at data_start + offset

Both halves of llmkit read GGUF files through this one parser: the planner (``llmkit.zoo``
sizes a ``.gguf`` without torch) and the engine (``llmkit.io.gguf`` maps the tensor bytes).
Reading is bounded by the file size everywhere, so a truncated or corrupt file is a
:class:`GGUFError` naming the file, never a hang, a huge allocation or an IndexError.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.calc.formats import GGML_TYPE_IDS
from llmkit.errors import LlmkitError
from llmkit.io.packed import PackedStrings

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8  # nested arrays deeper than this are treated as corruption

# GGUF metadata value types (gguf ``GGUFValueType``): id -> struct format of one scalar.
SCALAR_FORMATS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
STRING, ARRAY = 8, 9


class GGUFError(LlmkitError):
    """A file that is not a readable GGUF file."""


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of the tensor table: shape in PyTorch order (reversed ggml ``ne``), absolute byte offset."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str  # "Q4_1"
    ggml_type_id: int  # 3
    offset: int  # absolute offset of the first byte in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


# -- the header cursor ----------------------------------------------------------------------


class _Cursor:
    """Reads little-endian fields from a buffer, refusing to read past its end."""

    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> GGUFError:
        return GGUFError(f"{self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"truncated or corrupt GGUF header: {what} needs {n} bytes at offset {self.pos}, "
                            f"file has {self.size} bytes")

    def scalar(self, fmt: str, what: str) -> Any:
        self.need(struct.calcsize(fmt), what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self, what: str) -> str:
        n = self.scalar("<Q", what)
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8 (offset {self.pos - n})") from None


def _read_value(cur: _Cursor, vtype: int, what: str, depth: int = 0) -> Any:
    """One metadata value of GGUF value type ``vtype`` (arrays as lists, possibly nested; arrays of strings as
    :class:`~llmkit.io.packed.PackedStrings`: a vocabulary's 49k tokens without 49k str objects)."""
    if vtype in SCALAR_FORMATS:
        return cur.scalar(SCALAR_FORMATS[vtype], what)
    if vtype == STRING:
        return cur.string(what)
    if vtype == ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise cur.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} (corrupt file?)")
        return _read_array(cur, what, depth)
    raise cur.fail(f"{what} has unknown value type {vtype} (corrupt file?)")


def _read_array(cur: _Cursor, what: str, depth: int) -> list[Any] | PackedStrings:
    """An array value: element type u32, count u64, elements (numeric arrays in one read, strings packed)."""
    etype = cur.scalar("<I", what)
    count = cur.scalar("<Q", what)
    if etype in SCALAR_FORMATS:
        size = struct.calcsize(SCALAR_FORMATS[etype])
        cur.need(count * size, f"{what} ({count} elements)")
        values = list(struct.unpack_from(f"<{count}{SCALAR_FORMATS[etype][1]}", cur.buf, cur.pos))
        cur.pos += count * size
        return values
    # strings and arrays take at least 8 bytes each: bound the count before looping
    cur.need(count * 8, f"{what} ({count} elements)")
    if etype == STRING:
        return _read_strings(cur, count, what)
    return [_read_value(cur, etype, what, depth + 1) for _ in range(count)]


def _read_strings(cur: _Cursor, count: int, what: str) -> PackedStrings:
    """An array of strings as the file lays it out (u64 length + UTF-8, ``count`` times), packed, not as str objects."""
    start, length = cur.pos, struct.Struct("<Q")
    offsets = array("q")
    for _ in range(count):
        cur.need(8, what)
        (n,) = length.unpack_from(cur.buf, cur.pos)
        cur.need(8 + n, what)
        offsets.append(cur.pos + 8 - start)
        cur.pos += 8 + n
    offsets.append(cur.pos + 8 - start)  # where a next item would start, after its length
    strings = PackedStrings(cur.buf[start : cur.pos], offsets, gap=8)
    for i in range(count):  # every item valid UTF-8 now, not at first use
        try:
            strings.item(i)
        except UnicodeDecodeError:
            raise cur.fail(f"{what}[{i}] is not valid UTF-8 (offset {start + offsets[i]})") from None
    return strings


def _read_metadata(cur: _Cursor, kv_count: int) -> dict[str, Any]:
    """The key/value section: ``kv_count`` x (key, value type u32, value)."""
    cur.need(kv_count * 13, f"{kv_count} metadata entries")  # key length u64 + type u32 + >= 1 byte
    metadata: dict[str, Any] = {}
    for i in range(kv_count):
        key = cur.string(f"metadata key #{i}")
        if key in metadata:
            raise cur.fail(f"metadata key {key!r} appears twice (corrupt file?)")
        metadata[key] = _read_value(cur, cur.scalar("<I", key), f"metadata {key!r}")
    return metadata


def _read_tensor_info(cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
    """One tensor-table entry: (name, ggml ne, type id, offset relative to the data section)."""
    name = cur.string("tensor name")
    n_dims = cur.scalar("<I", f"tensor {name!r}")
    if n_dims > MAX_DIMS:
        raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (GGUF allows at most {MAX_DIMS}; corrupt file?)")
    cur.need(8 * n_dims, f"tensor {name!r} shape")
    ne = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.pos)
    cur.pos += 8 * n_dims
    type_id = cur.scalar("<I", f"tensor {name!r}")
    offset = cur.scalar("<Q", f"tensor {name!r}")
    return name, tuple(ne), type_id, offset


def _tensor(cur: _Cursor, info: tuple[str, tuple[int, ...], int, int], data_start: int) -> GGUFTensor:
    """A GGUFTensor from its table entry, checked against the type table and the file size."""
    name, ne, type_id, rel = info
    t = GGML_TYPE_IDS.get(type_id)
    if t is None:
        raise cur.fail(f"tensor {name!r} has unknown GGML type id {type_id} (corrupt file, or a newer format)")
    if ne and ne[0] % t.block_size:
        raise cur.fail(f"tensor {name!r}: row of {ne[0]} is not a multiple of the {t.name} block size {t.block_size}")
    n = 1
    for dim in ne:
        n *= dim
    nbytes = n // t.block_size * t.type_size
    offset = data_start + rel
    if offset + nbytes > cur.size:
        raise cur.fail(f"truncated GGUF: tensor {name!r} ends at byte {offset + nbytes}, file has {cur.size} bytes")
    return GGUFTensor(name, tuple(reversed(ne)), t.name, type_id, offset, nbytes)


def _alignment(cur: _Cursor, metadata: dict[str, Any]) -> int:
    """``general.alignment``: a power of two, 32 when absent."""
    align = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
        raise cur.fail(f"general.alignment must be a positive power of two; got {align!r}")
    return align



def map_file(path: Path) -> mmap.mmap:
    """A private (copy-on-write) map of the whole file: writes never reach the disk."""
    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a GGUF file") from None
    except ValueError:  # mmap of an empty file
        raise GGUFError(f"{path}: not a GGUF file (the file is empty)") from None
    except OSError as e:
        raise GGUFError(f"{path}: cannot read ({e.strerror or e})") from None


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data: version, metadata, the tensor table and where the data starts."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]  # in file order
    alignment: int
    data_offset: int

    @property
    def tensor_names(self) -> frozenset[str]:
        return frozenset(self.tensors)


def parse_header(buf: mmap.mmap, path: Path) -> GGUFHeader:
    """Parse the header of the GGUF file mapped in ``buf``; tensor entries are checked against its size."""
    cur = _Cursor(buf, path)
    if cur.size < 4 or buf[:4] != GGUF_MAGIC:
        raise cur.fail("not a GGUF file (bad magic: expected the file to start with 'GGUF')")
    cur.pos = 4
    version = cur.scalar("<I", "version")
    if version not in SUPPORTED_VERSIONS:
        endian = " (a big-endian file?)" if version & 0xFFFF == 0 else ""
        raise cur.fail(f"GGUF version {version}{endian} is not supported (supported: 2, 3)")
    n_tensors = cur.scalar("<Q", "tensor count")
    n_kv = cur.scalar("<Q", "metadata count")
    cur.need(n_tensors * 24, f"{n_tensors} tensor entries")  # each entry is at least 24 bytes
    metadata = _read_metadata(cur, n_kv)
    infos = [_read_tensor_info(cur) for _ in range(n_tensors)]
    alignment = _alignment(cur, metadata)
    data_offset = -(-cur.pos // alignment) * alignment
    tensors: dict[str, GGUFTensor] = {}
    for info in infos:
        if info[0] in tensors:
            raise cur.fail(f"tensor {info[0]!r} appears twice (corrupt file?)")
        tensors[info[0]] = _tensor(cur, info, data_offset)
    return GGUFHeader(path, version, metadata, tensors, alignment, data_offset)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """The header of a GGUF file (metadata and tensor table), reading no tensor data."""
    p = Path(path)
    buf = map_file(p)
    try:
        return parse_header(buf, p)
    finally:
        buf.close()
