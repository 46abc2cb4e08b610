"""Inference memory: weights in any format + KV cache + activations / workspace (sheet sections 3, 8, 12).

    weights      per tensor in the chosen format (calc.formats): fp32 ... nf4, or a GGUF
                 file type such as q4_k_m with llama.cpp's per-tensor types
    KV cache     2 · L · n_kv · d_head · bytes · tokens · batch (calc.kvcache)
    activations  the prefill's peak working set in one layer plus the last position's logits:
                 e·s·b·h (residual) + max(attention, FFN) working set + b·V·4 (fp32 logits)

    attention working set  s·b·(d_q + 2·d_kv)·e + (eager: b·a·s²·4, fp32 softmax; fused kernel: 0)
    FFN working set        s·b·f·e · (3 gated: gate, up, product | 1: activation)

Rule of thumb in the sheet: weights × 1.2 (Transformer Math 101); this module computes
the terms instead, and leaves out runtime overheads (CUDA context, allocator, graphs).

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from llmkit.calc.formats import all_format_names, format_bytes, unknown
from llmkit.calc.kvcache import KV_DTYPES, kv_cache
from llmkit.calc.memory import MemoryEstimate, require_choice, require_positive
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor


@dataclass(frozen=True)
class InferSettings:
    """Inference settings: weight format, context (prompt + generated tokens), batch, KV dtype and window."""

    format: str = "bf16"
    seq_len: int = 2048
    batch: int = 1
    kv_dtype: str = "fp16"
    window: int | str | None = "auto"
    block_size: int | None = None
    compute_dtype: str = "bf16"  # activations and the tensors bitsandbytes keeps unquantized
    fused_attention: bool = True  # SDPA / FlashAttention: no s x s score matrix

    def __post_init__(self) -> None:
        require_positive("seq_len", self.seq_len)
        require_positive("batch", self.batch)
        require_choice("kv_dtype", self.kv_dtype, KV_DTYPES)
        require_choice("compute_dtype", self.compute_dtype, ("fp32", "fp16", "bf16"))
        if self.format.lower() not in all_format_names():
            raise unknown("format", self.format, all_format_names())

    @property
    def element_bytes(self) -> int:
        """Bytes per activation element."""
        return 4 if self.compute_dtype == "fp32" else 2


def workspace_bytes(spec: ModelSpec, settings: InferSettings) -> int:
    """Prefill peak in one layer: residual e·s·b·h + max(attention, FFN working set) (module docstring)."""
    s, b, e = settings.seq_len, settings.batch, settings.element_bytes
    d_q, d_kv = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
    attention = s * b * (d_q + 2 * d_kv) * e
    if not settings.fused_attention:
        attention += b * spec.n_heads * s * s * 4
    gated = spec.ffn_kind in ("swiglu", "geglu")
    k = spec.experts_per_token if spec.is_moe else 1
    ffn = s * b * spec.d_ff * e * (3 if gated else 1) * k
    return e * s * b * spec.d_model + max(attention, ffn)


def last_logits_bytes(spec: ModelSpec, settings: InferSettings) -> int:
    """Logits of the last position only, in fp32: b · V · 4 (generation keeps one position)."""
    return 0 if spec.family == "encoder" else settings.batch * spec.vocab_size * 4


def infer_memory(spec: ModelSpec, settings: InferSettings = InferSettings(),
                 inventory: Sequence[Tensor] | None = None) -> MemoryEstimate:
    """Inference memory: weights (per tensor, in the format) + KV cache + activations (sheet sections 3, 12)."""
    if inventory is None:
        from llmkit.calc.params import tensors

        inventory = tensors(spec)
    weights = format_bytes(spec, inventory, settings.format, compute_dtype=settings.compute_dtype)
    kv = 0
    kv_note = "encoder: no KV cache"
    if spec.family != "encoder":
        cache = kv_cache(spec, settings.seq_len, settings.batch, settings.kv_dtype, settings.window,
                         settings.block_size)
        kv, kv_note = cache.bytes, f"KV cache {settings.kv_dtype}: {cache.convention}"
    breakdown = {
        "weights_bytes": weights.total_bytes,
        "kv_cache_bytes": kv,
        "activations_bytes": workspace_bytes(spec, settings) + last_logits_bytes(spec, settings),
    }
    notes = (
        f"weights {weights.format} ({weights.bits_per_weight:.3f} bits/weight): {weights.convention}",
        kv_note,
        "activations: one layer's prefill working set + fp32 logits of the last position",
        "not counted: CUDA context, allocator fragmentation, runtime buffers (the sheet's +20 %)",
    )
    return MemoryEstimate("infer", breakdown, notes)
