"""GGUF header reader: magic, version, key/value metadata and tensor infos, no tensor data.

Pure Python (``struct``), so the planner can size a ``.gguf`` file without torch or numpy.
The layout (little-endian, GGUF v2/v3; ggml's ``docs/gguf.md``)::

    magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x      (string key, u32 value_type, value)
    n_tensors x (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset)
    string = u64 length + UTF-8 bytes;  array = u32 item_type + u64 count + items
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from llmkit.errors import LlmkitError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

# GGUF metadata value types -> struct format (8: string and 9: array are read by hand).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_STRUCTS = {fmt: struct.Struct(fmt) for fmt in (*_SCALARS.values(), "<Q", "<I")}


class GGUFError(LlmkitError):
    """A file that is not a readable GGUF header."""


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor's entry in the header: ``dims`` in ggml order (innermost first), ggml type id, data offset."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data: version, metadata and tensor infos."""

    path: Path
    version: int
    metadata: Mapping[str, Any]
    tensors: tuple[GGUFTensorInfo, ...]

    @property
    def tensor_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tensors)


class _Reader:
    """Little-endian reads from a memory map; a read past the end is a GGUFError naming the file."""

    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated GGUF header (needs {n} more bytes at offset {self.pos})")

    def unpack(self, fmt: str) -> Any:
        s = _STRUCTS[fmt]
        self._need(s.size)
        (value,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        self._need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: a GGUF string is not valid UTF-8 (corrupt header?)") from None

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if count > len(self.buf) - self.pos:  # every item takes at least one byte
                raise GGUFError(f"{self.path}: truncated GGUF header (an array of {count} items runs past the end)")
            return [self.value(item) for _ in range(count)]
        raise GGUFError(f"{self.path}: unknown GGUF value type {kind} (corrupt header?)")


def _read_tensor_info(r: _Reader) -> GGUFTensorInfo:
    name = r.string()
    n_dims = r.unpack("<I")
    if n_dims > 8:
        raise GGUFError(f"{r.path}: tensor {name!r} claims {n_dims} dimensions (corrupt header?)")
    dims = tuple(r.unpack("<Q") for _ in range(n_dims))
    return GGUFTensorInfo(name, dims, r.unpack("<I"), r.unpack("<Q"))


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """The header of a GGUF file (metadata and tensor infos), reading no tensor data."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise GGUFError(f"{p}: no such file") from None
    except OSError as e:
        raise GGUFError(f"{p}: cannot read ({e.strerror})") from None
    with f:
        size = p.stat().st_size
        if size < 4 or f.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{p}: not a GGUF file (the first 4 bytes are not 'GGUF')")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            r = _Reader(buf, p)
            r.pos = 4
            version = r.unpack("<I")
            if version not in SUPPORTED_VERSIONS:
                raise GGUFError(f"{p}: GGUF version {version} is not supported (supported: 2, 3)")
            n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = r.string()
                metadata[key] = r.value(r.unpack("<I"))
            tensors = tuple(_read_tensor_info(r) for _ in range(n_tensors))
    return GGUFHeader(p, version, metadata, tensors)
