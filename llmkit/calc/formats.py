"""Bytes per weight for every number format (sheet sections 3 and 8).

Three registries, one question each:

* ``GGML_TYPES``: every GGUF tensor type as ``(block_size, type_size)``: a row of
  ``ncols`` weights takes ``ncols / block_size`` blocks of ``type_size`` bytes
  (ggml ``ggml-common.h`` static_asserts; gguf-py ``GGML_QUANT_SIZES``)::

      Q4_K super-block, 256 weights = 144 bytes = 4.5 bits/weight
      [ d fp16 | dmin fp16 | 12 B packed 6-bit scales | 128 B of 4-bit quants ]

* ``FORMATS``: the dtypes a user names (fp32, fp16, bf16, fp8, int8, int4, nf4,
  nf4-dq), with the bitsandbytes layout for int8 / nf4.
* ``GGUF_MIXES``: llama.cpp file types (Q4_K_M, Q5_K_S, ...), which assign a GGML
  type per tensor (``src/llama-quant.cpp``, :func:`gguf_tensor_type`).

Pure Python: no torch import.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from llmkit.errors import LlmkitError

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor
    from llmkit.spec import ModelSpec


class FormatError(LlmkitError, ValueError):
    """An unknown or impossible number format."""


def unknown(field: str, value: object, allowed: Sequence[str]) -> LlmkitError:
    """The one error for a setting outside its allowed values (with close matches)."""
    close = difflib.get_close_matches(str(value), list(allowed), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return FormatError(f"unknown {field} {value!r}{hint}; allowed: {', '.join(allowed)}")


# -- GGML tensor types -------------------------------------------------------------------------


@dataclass(frozen=True)
class GGMLType:
    """One GGUF tensor type: its id in the file; ``block_size`` weights are stored in ``type_size`` bytes."""

    name: str
    id: int
    block_size: int
    type_size: int

    @property
    def bits_per_weight(self) -> float:
        """type_size * 8 / block_size."""
        return self.type_size * 8 / self.block_size


QK_K = 256  # super-block size of the K-quants

# (name, id, block_size, type_size) from ggml.h (enum ggml_type) and ggml-common.h (block structs);
# Q8_1 as gguf-py has it (an intermediate type). The one table: the engine's dequantizers
# (llmkit.quant.ggml) and the GGUF reader take their geometry from here.
GGML_TYPES: dict[str, GGMLType] = {
    name: GGMLType(name, type_id, block, size)
    for name, type_id, block, size in (
        ("F32", 0, 1, 4), ("F16", 1, 1, 2), ("BF16", 30, 1, 2), ("F64", 28, 1, 8),
        ("I8", 24, 1, 1), ("I16", 25, 1, 2), ("I32", 26, 1, 4), ("I64", 27, 1, 8),
        ("Q4_0", 2, 32, 2 + 16), ("Q4_1", 3, 32, 2 + 2 + 16), ("Q5_0", 6, 32, 2 + 4 + 16),
        ("Q5_1", 7, 32, 2 + 2 + 4 + 16), ("Q8_0", 8, 32, 2 + 32), ("Q8_1", 9, 32, 4 + 4 + 32),
        ("Q2_K", 10, QK_K, 2 + 2 + QK_K // 16 + QK_K // 4),
        ("Q3_K", 11, QK_K, 2 + QK_K // 4 + QK_K // 8 + 12),
        ("Q4_K", 12, QK_K, 2 + 2 + QK_K // 2 + 12),
        ("Q5_K", 13, QK_K, 2 + 2 + QK_K // 2 + QK_K // 8 + 12),
        ("Q6_K", 14, QK_K, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
        ("Q8_K", 15, QK_K, 4 + QK_K + QK_K // 8),
        ("IQ2_XXS", 16, QK_K, 2 + QK_K // 4), ("IQ2_XS", 17, QK_K, 2 + QK_K // 4 + QK_K // 32),
        ("IQ3_XXS", 18, QK_K, 2 + QK_K // 4 + QK_K // 8), ("IQ1_S", 19, QK_K, 2 + QK_K // 8 + QK_K // 16),
        ("IQ4_NL", 20, 32, 2 + 16), ("IQ3_S", 21, QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
        ("IQ2_S", 22, QK_K, 2 + QK_K // 4 + QK_K // 16), ("IQ4_XS", 23, QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
        ("IQ1_M", 29, QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
        ("TQ1_0", 34, QK_K, 2 + 4 * 13), ("TQ2_0", 35, QK_K, 2 + 64),
        ("MXFP4", 39, 32, 1 + 16), ("NVFP4", 40, 64, 4 + 32), ("Q1_0", 41, 128, 2 + 16),
    )
}
GGML_TYPE_IDS: dict[int, GGMLType] = {t.id: t for t in GGML_TYPES.values()}


def ggml_type(name: str) -> GGMLType:
    """The GGML type called ``name`` (case-insensitive)."""
    t = GGML_TYPES.get(name.upper())
    if t is None:
        raise unknown("GGUF tensor type", name, list(GGML_TYPES))
    return t


def ggml_row_bytes(type_name: str, ncols: int) -> int:
    """Bytes of one row: ncols / block_size * type_size (ggml_row_size); ncols must fill whole blocks."""
    t = ggml_type(type_name)
    if ncols % t.block_size:
        raise FormatError(f"a row of {ncols} weights is not a whole number of {t.name} blocks ({t.block_size})")
    return ncols // t.block_size * t.type_size


def ggml_tensor_bytes(type_name: str, shape: Sequence[int]) -> int:
    """Bytes of a GGUF tensor: rows * row bytes, ``shape`` in ggml order (ne[0] = columns first)."""
    rows = math.prod(shape[1:])
    return rows * ggml_row_bytes(type_name, shape[0])


# -- named dtypes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """A weight format: ``block_size`` weights in ``block_bytes`` bytes, plus per-row / two-level overhead.

    ``blocks_over``: "row" (GGUF: blocks never straddle rows) or "flat" (bitsandbytes:
    the tensor is flattened and cut into blocks, the last one padded).
    ``second_level``: (blocks per second-level group, bytes per group) for double quantization.
    """

    name: str
    block_size: int
    block_bytes: int
    row_bytes: int = 0
    blocks_over: Literal["row", "flat"] = "flat"
    second_level: tuple[int, int] | None = None
    quantized: bool = False
    note: str = ""

    @property
    def bits_per_weight(self) -> float:
        """Bits per weight on a large tensor, per-row overhead excluded."""
        bits = self.block_bytes * 8 / self.block_size
        if self.second_level:
            per_group, group_bytes = self.second_level
            bits += group_bytes * 8 / (per_group * self.block_size)
        return bits


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("fp32", 1, 4, note="IEEE float32"),
        Format("fp16", 1, 2, note="IEEE float16"),
        Format("bf16", 1, 2, note="bfloat16"),
        Format("fp8", 1, 1, quantized=True, note="float8 e4m3/e5m2; the per-tensor fp32 scale is not counted"),
        Format("int8", 1, 1, row_bytes=4, quantized=True,
               note="bitsandbytes LLM.int8(): int8 weights + one fp32 absmax per output row (Dettmers et al. 2022)"),
        Format("int4", 2, 1, quantized=True,
               note="4-bit integers, no scales counted (the sheet's 0.5 B/param; real int4 kernels add group scales)"),
        Format("nf4", 64, 36, quantized=True,
               note="bitsandbytes NF4: blocks of 64, 32 B of 4-bit codes + fp32 absmax = 4.5 bpw (Dettmers et al. 2023)"),
        Format("nf4-dq", 64, 33, second_level=(256, 4), quantized=True,
               note="NF4 with double quantization: 8-bit absmax per 64 + fp32 scale per 256 absmax "
                    "= 4.127 bpw (QLoRA, Dettmers et al. 2023, sec. 3)"),
        Format("fp4", 64, 36, quantized=True, note="bitsandbytes FP4: same layout as NF4, 4.5 bpw"),
    )
}


def get_format(name: str) -> Format:
    """The format called ``name`` (fp32, fp16, bf16, fp8, int8, int4, nf4, nf4-dq, fp4)."""
    f = FORMATS.get(name.lower())
    if f is None:
        raise unknown("format", name, list(FORMATS))
    return f


def format_tensor_bytes(fmt: Format | str, shape: Sequence[int]) -> int:
    """Exact bytes of a tensor in ``fmt``: whole blocks, plus per-row and second-level overhead.

    ``shape`` is the framework's shape (rows first, last dim = columns).
    """
    f = get_format(fmt) if isinstance(fmt, str) else fmt
    numel = math.prod(shape)
    rows = numel // shape[-1] if shape else 1
    if f.blocks_over == "row":
        blocks = rows * math.ceil(shape[-1] / f.block_size)
    else:
        blocks = math.ceil(numel / f.block_size)
    total = blocks * f.block_bytes + rows * f.row_bytes
    if f.second_level:
        per_group, group_bytes = f.second_level
        total += math.ceil(blocks / per_group) * group_bytes
    return total


# -- llama.cpp file types (mixes) --------------------------------------------------------------

# File type -> default tensor type (llama_ftype_get_default_type in src/llama-quant.cpp).
GGUF_MIXES: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16",
    "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q8_0": "Q8_0",
    "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S",
    "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
    "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
    "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "MXFP4_MOE": "MXFP4", "NVFP4": "NVFP4",
}

Category = Literal["token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output",
                   "ffn_gate", "ffn_up", "ffn_down", "other"]

_ROLE_CATEGORY: dict[str, Category] = {
    "q": "attn_q", "k": "attn_k", "v": "attn_v", "qkv": "attn_qkv", "o": "attn_output",
    "gate": "ffn_gate", "up": "ffn_up", "gate_up": "ffn_up", "down": "ffn_down",
    "embed": "token_embd", "head": "output",
}
_IQ2_FAMILY = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


@dataclass(frozen=True)
class MixContext:
    """What llama-quant.cpp knows about the model when it picks a tensor's type."""

    mix: str
    n_layers: int  # n_layer_all
    n_attn_v: int  # attn_v-like tensors (attn_v, attn_qkv)
    n_gqa: int  # n_heads // n_kv_heads
    n_expert: int
    tied: bool  # no output.weight: token_embd is treated like the output tensor
    is_70b: bool  # LLaMA 70B (80 layers): attn_v gets more bits
    is_falcon: bool = False


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: first and last eighth of layers, and every third in between."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _output_type(ctx: MixContext, default: str, ncols: int) -> str:
    """output.weight (and a tied token_embd): Q6_K, or Q8_0 when a row is not whole 256-blocks."""
    if ctx.mix == "MXFP4_MOE" or ctx.is_falcon or ncols % GGML_TYPES[default].block_size:
        return "Q8_0"
    if ctx.mix in _IQ2_FAMILY or ctx.mix == "IQ3_XXS":
        return "Q5_K"
    return default if default == "Q8_0" else "Q6_K"


def _token_embd_type(ctx: MixContext, default: str) -> str:
    """An untied token_embd: the default type except for the smallest mixes."""
    if ctx.mix in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
        return "Q2_K"
    if ctx.mix in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
        return "IQ3_S"
    if ctx.mix in ("TQ1_0", "TQ2_0"):
        return "Q4_K"
    return default


def _iq2_family_type(ctx: MixContext, cat: Category, i: int, default: str) -> str:
    """The IQ1/IQ2 mixes (llama-quant.cpp's first branch)."""
    small = "IQ3_S" if ctx.mix in ("IQ2_S", "IQ2_M") else "Q2_K"
    if cat in ("attn_v", "attn_qkv"):
        return "Q4_K" if ctx.n_gqa >= 4 or ctx.n_expert >= 4 else small
    if ctx.n_expert == 8 and cat == "attn_k":
        return "Q4_K"
    if cat == "ffn_down":
        return small if i < ctx.n_layers // 8 else default
    if cat == "attn_output":
        if ctx.n_expert == 8:
            return "Q5_K"
        if ctx.mix in ("IQ1_S", "IQ1_M"):
            return "IQ2_XXS"
        if ctx.mix in ("IQ2_S", "IQ2_M"):
            return "IQ3_S"
    return default


def _attn_v_type(ctx: MixContext, i: int, default: str) -> str:
    """attn_v / attn_qkv: more bits for the value projection (i = index among attn_v tensors)."""
    m, gqa, new = ctx.mix, ctx.n_gqa, default
    if m == "Q2_K":
        new = "Q4_K" if gqa >= 4 else "Q3_K"
    elif m == "Q2_K_S" and gqa >= 4:
        new = "Q4_K"
    elif m == "IQ3_XXS":
        new = "Q4_K" if gqa >= 4 else "IQ3_S"
    elif m in ("IQ3_XS", "IQ3_S") and gqa >= 4:
        new = "Q4_K"
    elif m == "IQ3_M":
        new = "Q4_K"
    elif m == "Q3_K_M":
        new = "Q5_K" if i < 2 else "Q4_K"
    elif m == "Q3_K_L":
        new = "Q5_K"
    elif m in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
        new = "Q5_K"
    elif m in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, ctx.n_attn_v):
        new = "Q6_K"
    elif m == "Q4_K_S" and i < 4:
        new = "Q5_K"
    if ctx.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"
    return "Q8_0" if ctx.n_expert == 8 else new


def _ffn_down_type(ctx: MixContext, i: int, default: str) -> str:
    """ffn_down: more bits in the first / last layers (i = layer index)."""
    m, n = ctx.mix, ctx.n_layers
    if m == "Q2_K":
        return "Q3_K"
    if m == "Q2_K_S":
        return "Q4_K" if i < n // 8 else default
    if m == "IQ3_XXS":
        return "Q4_K" if i < n // 8 else "Q3_K"
    if m == "Q3_K_M":
        return "Q5_K" if i < n // 16 else "Q4_K" if not ctx.is_falcon or use_more_bits(i, n) else "Q3_K"
    if m == "IQ3_M" and (i < n // 8 or (ctx.n_expert == 8 and use_more_bits(i, n))):
        return "Q4_K"
    if m == "Q3_K_L":
        return "Q4_K" if ctx.is_falcon else "Q5_K"
    if m == "Q4_K_M":
        if ctx.is_falcon:
            return "Q6_K" if i < n // 16 else "Q5_K" if use_more_bits(i, n) else "Q4_K"
        return "Q6_K" if use_more_bits(i, n) else default
    if i < n // 8 and m in ("IQ4_NL", "IQ4_XS"):
        return "Q5_K"
    if m == "Q5_K_M" and use_more_bits(i, n):
        return "Q6_K"
    if m == "Q4_K_S" and not ctx.is_falcon and i < n // 8:
        return "Q5_K"
    return default


def _attn_output_type(ctx: MixContext, default: str) -> str:
    """attn_output: one step up in the 2- and 3-bit mixes."""
    m = ctx.mix
    if ctx.is_falcon:
        return "Q4_K" if m == "Q3_K_L" else default
    if ctx.n_expert == 8:
        bumped = ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S",
                  "IQ3_M", "IQ4_XS")
        return "Q5_K" if m in bumped else default
    return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}.get(m, default)


def _category_type(ctx: MixContext, cat: Category, i: int, default: str) -> str:
    """llama_tensor_get_type_impl: the mix's choice for one tensor before the shape fallback."""
    if ctx.mix in _IQ2_FAMILY:
        return _iq2_family_type(ctx, cat, i, default)
    if cat in ("attn_v", "attn_qkv"):  # category_is_attn_v: the fused QKV takes the attn_v rules
        return _attn_v_type(ctx, i, default)
    if cat == "attn_k" and ctx.n_expert == 8:
        return "Q8_0"
    if cat in ("attn_k", "attn_q") and ctx.mix == "IQ3_XS":
        return "IQ3_XXS"
    if cat in ("attn_k", "attn_q") and ctx.mix == "IQ3_XXS":
        return "IQ2_S"
    if cat == "ffn_down":
        return _ffn_down_type(ctx, i, default)
    if cat == "attn_output":
        return _attn_output_type(ctx, default)
    if cat in ("ffn_gate", "ffn_up") and ctx.mix == "IQ3_XS" and ctx.n_layers // 8 <= i < 7 * ctx.n_layers // 8:
        return "IQ3_XXS"
    return default


# Shape fallback (tensor_type_fallback): a row that is not whole blocks of the chosen type.
_FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"),
    **dict.fromkeys(("Q2_K", "Q3_K", "TQ1_0", "TQ2_0"), "Q4_0"),
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


def shape_fallback(type_name: str, ncols: int) -> str:
    """tensor_type_fallback: a compatible type when ncols is not a multiple of the block (else F16)."""
    if ncols % GGML_TYPES[type_name].block_size == 0:
        return type_name
    new = _FALLBACK.get(type_name, "F16")
    return new if ncols % GGML_TYPES[new].block_size == 0 else "F16"


# -- from the inventory to GGUF -------------------------------------------------------------


def tensor_columns(t: Tensor) -> int:
    """Input features of a weight = GGUF ne[0]: the last dim, the first for GPT-2's Conv1D (in, out)."""
    return t.shape[0] if t.transposed else t.shape[-1]


def category(t: Tensor) -> Category:
    """The llama.cpp tensor category of an inventory tensor, from its role."""
    return _ROLE_CATEGORY.get(t.role, "other")


def quantizable(t: Tensor) -> bool:
    """tensor_allows_quantization: 2-D+ weights, not norms, positions, token types, routers, T5 bias."""
    if len(t.shape) < 2 or not (t.name.endswith("weight") or t.component == "experts"):
        return False  # transformers 5 stacks experts as bare parameters (GGUF: ffn_*_exps.weight)
    return t.role not in ("norm", "pos", "type", "rel_bias") and t.component != "router"


def unquantized_type(t: Tensor) -> str:
    """The type a tensor keeps when not quantized: F32 for 1-D tensors and routers, else F16.

    Convention: convert_hf_to_gguf.py writes 1-D tensors and ffn_gate_inp in F32 and other
    tensors in the output type (F16 by default).
    """
    return "F32" if len(t.shape) < 2 or t.component == "router" else "F16"


def mix_context(spec: ModelSpec, inventory: Sequence[Tensor], mix: str) -> MixContext:
    """The counters llama-quant.cpp builds before it assigns types (init_quantize_state_counters)."""
    return MixContext(
        mix=mix,
        n_layers=spec.total_layers,
        n_attn_v=sum(category(t) in ("attn_v", "attn_qkv") for t in inventory),
        n_gqa=spec.n_heads // spec.kv_heads,
        n_expert=spec.n_experts,
        tied=not any(t.role == "head" for t in inventory),
        is_70b=spec.family == "decoder" and spec.hf_model_type == "llama" and spec.n_layers == 80,
    )


def gguf_tensor_type(t: Tensor, ctx: MixContext, i_attn_v: int, ncols: int) -> str:
    """The GGML type llama.cpp's quantizer gives tensor ``t`` in file type ``ctx.mix``.

    ``i_attn_v``: index among the attn_v-like tensors (llama.cpp walks tensors by layer).
    """
    default = GGUF_MIXES[ctx.mix]
    if GGML_TYPES[default].block_size == 1:  # F32 / F16 / BF16 files: 1-D tensors stay F32
        return "F32" if len(t.shape) < 2 else default
    if not quantizable(t):
        return unquantized_type(t)
    cat = category(t)
    if cat == "output" or (ctx.tied and cat == "token_embd"):
        new = _output_type(ctx, default, ncols)
    elif ctx.mix == "MXFP4_MOE":
        new = "MXFP4" if t.component == "experts" and len(t.shape) == 3 else "Q8_0"
    elif cat == "token_embd":
        new = _token_embd_type(ctx, default)
    else:
        i = i_attn_v if cat in ("attn_v", "attn_qkv") else (t.layer or 0)
        new = _category_type(ctx, cat, i, default)
    return shape_fallback(new, ncols)


@dataclass(frozen=True)
class TensorBytes:
    """One tensor of a weights estimate: its storage type and exact bytes."""

    name: str
    shape: tuple[int, ...]
    type: str
    bytes: int


@dataclass(frozen=True)
class WeightsBytes:
    """Bytes of all weights in one format, tensor by tensor, with the convention used."""

    format: str
    total_bytes: int
    n_params: int
    by_type: dict[str, int]
    tensors: tuple[TensorBytes, ...]
    convention: str

    @property
    def bits_per_weight(self) -> float:
        """8 * total_bytes / n_params."""
        return 8 * self.total_bytes / self.n_params


def gguf_mix_bytes(spec: ModelSpec, inventory: Sequence[Tensor], mix: str) -> WeightsBytes:
    """Bytes of a GGUF file's tensors in llama.cpp file type ``mix``, type assigned per tensor (llama-quant.cpp)."""
    key = mix.upper()
    if key not in GGUF_MIXES:
        raise unknown("GGUF file type", mix, list(GGUF_MIXES))
    ctx = mix_context(spec, inventory, key)
    attn_v = sorted((t for t in inventory if category(t) in ("attn_v", "attn_qkv")), key=lambda t: (t.layer or 0, t.name))
    order = {t.name: i for i, t in enumerate(attn_v)}
    rows = []
    for t in inventory:
        ncols = tensor_columns(t)
        kind = gguf_tensor_type(t, ctx, order.get(t.name, 0), ncols)
        rows.append(TensorBytes(t.name, t.shape, kind, t.numel // ncols * ggml_row_bytes(kind, ncols)))
    return _weights(key, rows, "llama.cpp llama-quant.cpp type rules (no imatrix); unquantized 2-D tensors F16, 1-D F32")


def _weights(fmt: str, rows: list[TensorBytes], convention: str) -> WeightsBytes:
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r.type] = by_type.get(r.type, 0) + r.bytes
    return WeightsBytes(
        format=fmt, total_bytes=sum(r.bytes for r in rows), n_params=sum(math.prod(r.shape) for r in rows),
        by_type=by_type, tensors=tuple(rows), convention=convention,
    )


def keeps_16bit(t: Tensor) -> bool:
    """bitsandbytes (via transformers) quantizes Linear weights only: embeddings, norms, biases,
    the LM head and the pooler (the last module, ``get_keys_to_not_convert``) stay 16-bit, and so
    do Mixtral's stacked 3-D expert tensors (bare parameters in transformers 5, not Linear modules)."""
    return not (t.is_linear_weight and t.role not in ("head", "pooler", "embed"))


def format_bytes(spec: ModelSpec, inventory: Sequence[Tensor], fmt: str, compute_dtype: str = "fp16") -> WeightsBytes:
    """Bytes of all weights in ``fmt`` (a dtype, a quantized format, or a GGUF file type), per tensor."""
    if fmt.upper() in GGUF_MIXES and fmt.lower() not in FORMATS:
        return gguf_mix_bytes(spec, inventory, fmt)
    if fmt.lower() not in FORMATS:
        raise unknown("format", fmt, all_format_names())
    f = get_format(fmt)
    low = get_format(compute_dtype)
    rows = []
    for t in inventory:
        use = low if f.quantized and keeps_16bit(t) else f
        rows.append(TensorBytes(t.name, t.shape, use.name, format_tensor_bytes(use, t.shape)))
    convention = f.note
    if f.quantized:
        convention += f"; embeddings, norms, biases, LM head and pooler stay {low.name} (bitsandbytes/transformers)"
    return _weights(f.name, rows, convention)


def all_format_names() -> list[str]:
    """Every name :func:`format_bytes` accepts: dtypes first, then GGUF file types (lower case)."""
    return list(FORMATS) + [m.lower() for m in GGUF_MIXES]
