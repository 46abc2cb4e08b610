"""GGUF files in the engine: the memory-mapped tensors, the ModelSpec they describe, and their state dict.

The header (metadata and tensor table) is parsed by :mod:`llmkit.io.gguf_header`, the one
pure-Python GGUF parser, shared with the planner. Opening reads only the header; tensor bytes
stay in the page cache until used.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmkit.errors import LlmkitError
from llmkit.io.gguf_header import GGUFError, GGUFTensor, map_file, parse_header
from llmkit.quant.ggml import dequantize as dequantize_ggml
from llmkit.quant.ggml import ggml_type as ggml_type_info
from llmkit.spec import ModelSpec, SpecError, from_gguf_metadata

__all__ = ["GGUFError", "GGUFFile", "GGUFTensor", "PackedTensor", "llama_state_dict", "llmkit_name", "open_gguf",
           "unpermute_qk"]


class GGUFFile:
    """A memory-mapped GGUF file: metadata, the tensor table, and each tensor's bytes on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._map = map_file(self.path)
        header = parse_header(self._map, self.path)
        self.version: int = header.version
        self.metadata: dict[str, Any] = header.metadata
        self.tensors: dict[str, GGUFTensor] = header.tensors
        self.alignment, self.data_offset = header.alignment, header.data_offset
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

    def release(self, name: str) -> None:
        """Drop the pages of tensor ``name`` from this process's memory (re-read from disk if used again).

        Once a tensor is dequantized its file bytes are dead weight in the resident set: releasing
        them as the loader goes keeps the peak near the float weights alone.
        """
        t = self.tensor(name)
        page = mmap.PAGESIZE
        start, end = -(-t.offset // page) * page, (t.offset + t.nbytes) // page * page  # whole pages inside
        if end > start and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def dequantize(self, name: str) -> torch.Tensor:
        """The tensor as float32, shape in PyTorch order (rows, cols) = reversed ggml ``ne``."""
        t = self.tensor(name)
        return dequantize_rows(self.raw(name), t.ggml_type, t.shape, f"{self.path}: tensor {name!r}")

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


@dataclass(frozen=True)
class PackedTensor:
    """A weight matrix kept as the file stores it: rows of GGML blocks, uint8 [N, K / block * type size].

    Row operations (q/k un-permuting, splitting fused tensors) act on it as on the float matrix.
    """

    data: torch.Tensor
    ggml_type: str
    in_features: int


def dequantize_rows(data: torch.Tensor, ggml_type: str, shape: tuple[int, ...], where: str) -> torch.Tensor:
    """float32 [shape] from a GGML tensor's bytes: by the C kernel when it has the type (one allocation, no
    temporaries, the same arithmetic as gguf-py), by quant.ggml otherwise. Bad sizes: GGUFError naming ``where``."""
    from llmkit import kernels

    try:
        if ggml_type in kernels.GGML_FORMATS and len(shape) == 2 and kernels.enabled():
            t = ggml_type_info(ggml_type)
            expected = shape[0] * (shape[1] // t.block_size) * t.type_size
            if shape[1] % t.block_size or data.numel() != expected:
                raise LlmkitError(f"{ggml_type} tensor of shape {tuple(shape)} needs {expected} bytes in whole "
                                  f"{t.block_size}-blocks, got {data.numel()} bytes")
            if expected == 0:
                return torch.zeros(shape)
            rows = data.reshape(shape[0], -1).contiguous()
            return kernels.dequantize_rows(rows, kernels.GGML_FORMATS[ggml_type], shape[1])
        return dequantize_ggml(data.reshape(-1), ggml_type, shape)
    except LlmkitError as e:
        raise GGUFError(f"{where}: {e}") from None


def _load(gguf: GGUFFile, name: str) -> torch.Tensor | PackedTensor:
    """A vector dequantized to float32; a matrix as its raw rows (zero copy), for row operations before decoding."""
    t = gguf.tensor(name)
    raw = gguf.raw(name)
    if len(t.shape) != 2 or not t.shape[0] or raw.numel() % t.shape[0]:
        return gguf.dequantize(name)  # a vector, or sizes that do not add up (a clear GGUFError)
    return PackedTensor(raw.view(t.shape[0], -1), t.ggml_type, t.shape[1])


def _rows(w: torch.Tensor | PackedTensor, fn) -> torch.Tensor | PackedTensor:
    """fn applied to the rows of a float matrix or of a packed one."""
    if isinstance(w, PackedTensor):
        return PackedTensor(fn(w.data), w.ggml_type, w.in_features)
    return fn(w)


def _convert(
    gguf: GGUFFile, spec: ModelSpec, name: str, keep: frozenset[str] = frozenset()
) -> dict[str, torch.Tensor | PackedTensor] | None:
    """llmkit's tensor(s) for one GGUF tensor: renamed, q/k un-permuted, fused ones split; None if unknown."""
    arch = spec.hf_model_type
    if arch == "phi3" and name.endswith(("attn_qkv.weight", "ffn_up.weight")):
        return _split_fused(spec, name, gguf.dequantize(name))
    target = llmkit_name(name)
    if target is None:
        return None
    w = _load(gguf, name)
    if arch in PERMUTED_QK_ARCHITECTURES and ".attn.q." in target:
        w = _rows(w, lambda rows: unpermute_qk(rows, spec.n_heads))
    elif arch in PERMUTED_QK_ARCHITECTURES and ".attn.k." in target:
        w = _rows(w, lambda rows: unpermute_qk(rows, spec.kv_heads))
    if isinstance(w, PackedTensor) and w.ggml_type not in keep:
        shape = (w.data.shape[0], w.in_features)
        w = dequantize_rows(w.data, w.ggml_type, shape, f"{gguf.path}: tensor {name!r}")
    return {target: w}


def llama_state_dict(
    gguf: GGUFFile, dtype: torch.dtype = torch.float32, keep: frozenset[str] = frozenset()
) -> dict[str, torch.Tensor | PackedTensor]:
    """llmkit's state dict for a llama-family GGUF: dequantized, renamed, q/k rows back in HF order.

    Matrices whose GGML type is in ``keep`` (e.g. {"Q4_1"}) stay packed as stored (:class:`PackedTensor`).
    """
    spec = gguf.spec()
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for name in gguf.tensors:
        if name in IGNORED_TENSORS:
            continue
        converted = _convert(gguf, spec, name, keep)
        if converted is None:
            unknown.append(name)
            continue
        state.update({k: v if isinstance(v, PackedTensor) else v.to(dtype) for k, v in converted.items()})
        if not any(isinstance(v, PackedTensor) for v in converted.values()):
            gguf.release(name)
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise GGUFError(f"{gguf.path}: tensors of architecture {spec.hf_model_type!r} that llmkit does not map: "
                        f"{', '.join(unknown[:5])}{more}")
    return state
