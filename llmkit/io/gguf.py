"""GGUF files: a lean, memory-mapped reader, the ModelSpec they describe, and their state dict.

Layout (GGUF v2/v3, little-endian; ggml ``docs/gguf.md``, gguf-py ``gguf_reader.py``)::

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   key (u64 length + utf-8) | value_type u32 | value
    tensor_count x   name | n_dims u32 | ne u64[n_dims] (ggml order: fastest first) | ggml_type u32 | offset u64
    padding to general.alignment (default 32)
    tensor data: each tensor at data_start + offset

Opening reads only the header (metadata and the tensor table); tensor bytes stay
in the page cache until used. Reading is bounded by the file size everywhere, so
a truncated or corrupt file is an :class:`GGUFError` naming the file, never a
hang, a huge allocation or an IndexError.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmkit.errors import LlmkitError
from llmkit.quant.ggml import GGML_TYPES, dequantize as dequantize_ggml
from llmkit.spec import ModelSpec, SpecError, from_gguf_metadata

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
    """One metadata value of GGUF value type ``vtype`` (arrays as lists, possibly nested)."""
    if vtype in SCALAR_FORMATS:
        return cur.scalar(SCALAR_FORMATS[vtype], what)
    if vtype == STRING:
        return cur.string(what)
    if vtype == ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise cur.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} (corrupt file?)")
        return _read_array(cur, what, depth)
    raise cur.fail(f"{what} has unknown value type {vtype} (corrupt file?)")


def _read_array(cur: _Cursor, what: str, depth: int) -> list[Any]:
    """An array value: element type u32, count u64, elements (numeric arrays in one read)."""
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
    return [_read_value(cur, etype, what, depth + 1) for _ in range(count)]


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
    t = GGML_TYPES.get(type_id)
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


# -- the file ---------------------------------------------------------------------------------


def _map(path: Path) -> mmap.mmap:
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


class GGUFFile:
    """A memory-mapped GGUF file: metadata, the tensor table, and each tensor's bytes on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._map = _map(self.path)
        cur = _Cursor(self._map, self.path)
        if cur.size < 4 or self._map[:4] != GGUF_MAGIC:
            raise cur.fail("not a GGUF file (bad magic: expected the file to start with 'GGUF')")
        cur.pos = 4
        self.version: int = cur.scalar("<I", "version")
        if self.version not in SUPPORTED_VERSIONS:
            endian = " (a big-endian file?)" if self.version & 0xFFFF == 0 else ""
            raise cur.fail(f"GGUF version {self.version}{endian} is not supported (supported: 2, 3)")
        n_tensors = cur.scalar("<Q", "tensor count")
        n_kv = cur.scalar("<Q", "metadata count")
        cur.need(n_tensors * 24, f"{n_tensors} tensor entries")  # each entry is at least 24 bytes
        self.metadata: dict[str, Any] = _read_metadata(cur, n_kv)
        infos = [_read_tensor_info(cur) for _ in range(n_tensors)]
        self.alignment = _alignment(cur, self.metadata)
        self.data_offset = -(-cur.pos // self.alignment) * self.alignment
        self.tensors: dict[str, GGUFTensor] = {}
        for info in infos:
            if info[0] in self.tensors:
                raise cur.fail(f"tensor {info[0]!r} appears twice (corrupt file?)")
            self.tensors[info[0]] = _tensor(cur, info, self.data_offset)
        self._bytes = torch.frombuffer(self._map, dtype=torch.uint8)  # (file size,) over the map, no copy

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, version={self.version}, tensors={len(self.tensors)})"

    def tensor(self, name: str) -> GGUFTensor:
        """The table entry of tensor ``name``."""
        info = self.tensors.get(name)
        if info is None:
            raise GGUFError(f"{self.path}: no tensor named {name!r}")
        return info

    def raw(self, name: str) -> torch.Tensor:
        """The tensor's bytes as a flat uint8 tensor over the file map (zero copy, copy-on-write)."""
        t = self.tensor(name)
        return self._bytes[t.offset : t.offset + t.nbytes]

    def dequantize(self, name: str) -> torch.Tensor:
        """The tensor as float32, shape in PyTorch order (rows, cols) = reversed ggml ``ne``."""
        t = self.tensor(name)
        try:
            return dequantize_ggml(self.raw(name), t.ggml_type, t.shape)
        except LlmkitError as e:
            raise GGUFError(f"{self.path}: tensor {name!r}: {e}") from None

    def spec(self, name: str = "") -> ModelSpec:
        """The ModelSpec the metadata describes (``llmkit.spec.from_gguf_metadata``)."""
        try:
            return from_gguf_metadata(self.metadata, set(self.tensors), name=name)
        except SpecError as e:
            raise SpecError(f"{self.path}: {e}") from None


def open_gguf(path: str | Path) -> GGUFFile:
    """Open a GGUF file (reads only the header; tensor bytes are mapped, not loaded)."""
    return GGUFFile(path)


# -- GGUF names -> llmkit names -------------------------------------------------------------

# GGUF tensor name (block index as {i}) -> llmkit module name.
LLAMA_NAMES: dict[str, str] = {
    "token_embd.weight": "embed.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "blocks.{i}.attn_norm.weight",
    "blk.{i}.attn_q.weight": "blocks.{i}.attn.q.weight",
    "blk.{i}.attn_k.weight": "blocks.{i}.attn.k.weight",
    "blk.{i}.attn_v.weight": "blocks.{i}.attn.v.weight",
    "blk.{i}.attn_q.bias": "blocks.{i}.attn.q.bias",
    "blk.{i}.attn_k.bias": "blocks.{i}.attn.k.bias",
    "blk.{i}.attn_v.bias": "blocks.{i}.attn.v.bias",
    "blk.{i}.attn_output.weight": "blocks.{i}.attn.o.weight",
    "blk.{i}.ffn_norm.weight": "blocks.{i}.ffn_norm.weight",
    "blk.{i}.ffn_gate.weight": "blocks.{i}.ffn.gate.weight",
    "blk.{i}.ffn_up.weight": "blocks.{i}.ffn.up.weight",
    "blk.{i}.ffn_down.weight": "blocks.{i}.ffn.down.weight",
}
# Tensors that are not weights of the module (RoPE scaling factors, described by the ModelSpec).
IGNORED_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
# Architectures whose converter permuted q/k rows for ggml's interleaved RoPE (convert_hf_to_gguf.py LlamaModel).
PERMUTED_QK_ARCHITECTURES = ("llama",)
_BLOCK = re.compile(r"^blk\.(\d+)\.")


def llmkit_name(gguf_name: str) -> str | None:
    """llmkit's module name for a GGUF llama-family tensor name (None when it is not one)."""
    m = _BLOCK.match(gguf_name)
    key = _BLOCK.sub("blk.{i}.", gguf_name) if m else gguf_name
    target = LLAMA_NAMES.get(key)
    return target.format(i=m.group(1)) if target and m else target


def unpermute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo convert_hf_to_gguf.py's ``permute``: per head, interleaved rotary pairs -> half-split rows.

    ::

        GGUF rows of one head (interleaved pairs)   HF rows (rotate-half)
          x0 y0 x1 y1 ... x(h/2-1) y(h/2-1)    ->    x0 x1 ... x(h/2-1) y0 y1 ... y(h/2-1)

    (transformers ``_reverse_permute_weights``: reshape (n_heads, h/2, 2, ...) then swap axes 1 and 2).
    """
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)  # (rows, ...) in HF order


def _split_fused(spec: ModelSpec, name: str, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Phi-3's fused tensors: attn_qkv -> q, k, v rows; ffn_up -> gate, up rows (gate first, as HF's chunk(2))."""
    i = _BLOCK.match(name).group(1)  # type: ignore[union-attr]
    if name.endswith("attn_qkv.weight"):
        q_rows, kv_rows = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
        q, k, v = torch.split(w, [q_rows, kv_rows, kv_rows])
        return {f"blocks.{i}.attn.q.weight": q, f"blocks.{i}.attn.k.weight": k, f"blocks.{i}.attn.v.weight": v}
    gate, up = torch.split(w, [spec.d_ff, spec.d_ff])
    return {f"blocks.{i}.ffn.gate.weight": gate, f"blocks.{i}.ffn.up.weight": up}


def _convert(gguf: GGUFFile, spec: ModelSpec, name: str) -> dict[str, torch.Tensor] | None:
    """llmkit's tensor(s) for one GGUF tensor: renamed, q/k un-permuted, fused ones split; None if unknown."""
    arch = spec.hf_model_type
    if arch == "phi3" and name.endswith(("attn_qkv.weight", "ffn_up.weight")):
        return _split_fused(spec, name, gguf.dequantize(name))
    target = llmkit_name(name)
    if target is None:
        return None
    w = gguf.dequantize(name)
    if arch in PERMUTED_QK_ARCHITECTURES and ".attn.q." in target:
        w = unpermute_qk(w, spec.n_heads)
    elif arch in PERMUTED_QK_ARCHITECTURES and ".attn.k." in target:
        w = unpermute_qk(w, spec.kv_heads)
    return {target: w}


def llama_state_dict(gguf: GGUFFile, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """llmkit's state dict for a llama-family GGUF: dequantized, renamed, q/k rows back in HF order."""
    spec = gguf.spec()
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for name in gguf.tensors:
        if name in IGNORED_TENSORS:
            continue
        converted = _convert(gguf, spec, name)
        if converted is None:
            unknown.append(name)
            continue
        state.update({k: v.to(dtype) for k, v in converted.items()})
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise GGUFError(f"{gguf.path}: tensors of architecture {spec.hf_model_type!r} that llmkit does not map: "
                        f"{', '.join(unknown[:5])}{more}")
    return state
