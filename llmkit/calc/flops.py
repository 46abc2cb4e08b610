"""FLOPs: training, forward per token, prefill vs decode, and MFU (sheet sections 1 and 14).

    forward per token at context c    2·N + 4·L·c·d_attn         (Kaplan et al. 2020, Table 1: 2N;
                                                                  QKᵀ and AV, 2·c·d_attn each per layer)
    training per token                6·N + 12·L·H·Q·T           (PaLM, Chowdhery et al. 2022, App. B)
    training, total                   ≈ 6·N·D                    (Kaplan; "Transformer Math 101")

N counts the weights that take part in matrix products: every weight matrix except the
embedding tables (token, position, type), plus the LM head when it is tied (it still
multiplies), and for MoE only the experts a token uses; norms and biases (vectors, no
products) are left out, as a FLOP counter over matmuls counts. d_attn = n_heads · d_head.

Causal convention: a causal kernel computes about half of the s x s scores. PaLM's 12·L·H·Q·T
counts them all (``causal=False``, the default for training and MFU as PaLM reports it);
``causal=True`` counts token i's attention over its i predecessors exactly (T(T+1)/2 pairs).
Megatron-LM and torchtitan disagree on this, so the result states which was used.

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from llmkit.calc.memory import require_positive
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor

_NOT_MATMUL = ("embeddings", "positions")


@dataclass(frozen=True)
class Flops:
    """A FLOP count split into dense (2·N per token) and attention-score terms."""

    total: int
    dense: int
    attention: int
    convention: str


def matmul_params(spec: ModelSpec, inventory: Sequence[Tensor] | None = None) -> int:
    """N for FLOPs: weight matrices used in products per token (no embedding tables or vectors; tied head counted; MoE active)."""
    from llmkit.calc.params import inactive_expert_params, tensors

    inv = tensors(spec) if inventory is None else inventory
    n = sum(t.numel for t in inv if t.component not in _NOT_MATMUL and len(t.shape) >= 2)
    if spec.tied_embeddings and spec.family != "encoder":
        n += spec.vocab_size * spec.d_model  # the tied LM head still multiplies
    return n - inactive_expert_params(spec, list(inv))


def attention_context(spec: ModelSpec, context: int) -> int:
    """Tokens a query attends to: the context, capped at the sliding window."""
    return min(context, spec.sliding_window) if spec.sliding_window else context


def d_attn(spec: ModelSpec) -> int:
    """Width of the attention scores' contraction: n_heads · d_head."""
    return spec.n_heads * spec.d_head


def forward_flops_per_token(spec: ModelSpec, context: int, inventory: Sequence[Tensor] | None = None) -> Flops:
    """Forward FLOPs of one token at context c: 2·N + 4·L·c·d_attn (Kaplan et al. 2020, Table 1)."""
    require_positive("context", context)
    dense = 2 * matmul_params(spec, inventory)
    attn = 4 * spec.total_layers * attention_context(spec, context) * d_attn(spec)
    return Flops(dense + attn, dense, attn, "2N + 4*L*c*d_attn (QK^T and AV at context c)")


def causal_pairs(spec: ModelSpec, tokens: int) -> int:
    """Query-key pairs of a causal pass over T tokens: sum over i of min(i, W) (T(T+1)/2 without a window)."""
    w = spec.sliding_window
    if not w or w >= tokens:
        return tokens * (tokens + 1) // 2
    return w * (w + 1) // 2 + (tokens - w) * w


def prefill_flops(spec: ModelSpec, prompt_len: int, batch: int = 1, causal: bool = True,
                  inventory: Sequence[Tensor] | None = None) -> Flops:
    """Prefill FLOPs: b·(2·N·T + 4·L·d_attn·pairs), pairs = T(T+1)/2 causal or T² full (Kaplan; kipp.ly)."""
    require_positive("prompt_len", prompt_len)
    require_positive("batch", batch)
    dense = 2 * matmul_params(spec, inventory) * prompt_len * batch
    pairs = causal_pairs(spec, prompt_len) if causal else prompt_len * attention_context(spec, prompt_len)
    attn = 4 * spec.total_layers * d_attn(spec) * pairs * batch
    how = "causal: T(T+1)/2 score pairs" if causal else "full: T^2 score pairs (no causal halving)"
    return Flops(dense + attn, dense, attn, f"2*N*T + 4*L*d_attn*pairs; {how}")


def decode_flops(spec: ModelSpec, context: int, batch: int = 1, inventory: Sequence[Tensor] | None = None) -> Flops:
    """FLOPs of one decode step for b sequences at context c: b·(2·N + 4·L·c·d_attn)."""
    require_positive("batch", batch)
    one = forward_flops_per_token(spec, context, inventory)
    return Flops(one.total * batch, one.dense * batch, one.attention * batch, one.convention)


def training_flops(spec: ModelSpec, tokens: int, seq_len: int, causal: bool = False,
                   inventory: Sequence[Tensor] | None = None) -> Flops:
    """Training FLOPs for D tokens: (6·N + 12·L·H·Q·T)·D (PaLM App. B); ``dense`` alone is 6·N·D (Kaplan)."""
    require_positive("tokens", tokens)
    require_positive("seq_len", seq_len)
    dense = 6 * matmul_params(spec, inventory) * tokens
    per_seq = causal_pairs(spec, seq_len) if causal else seq_len * attention_context(spec, seq_len)
    attn = 12 * spec.total_layers * d_attn(spec) * per_seq * tokens // seq_len
    how = "causal (halved scores)" if causal else "PaLM: all T^2 scores counted"
    return Flops(dense + attn, dense, attn, f"6*N*D + 12*L*H*Q*T*D; {how}")


def mfu(spec: ModelSpec, tokens_per_second: float, peak_flops: float, seq_len: int, causal: bool = False,
        inventory: Sequence[Tensor] | None = None) -> float:
    """Model FLOPs utilisation = tokens/s · training FLOPs per token / peak FLOP/s (PaLM App. B)."""
    if tokens_per_second <= 0 or peak_flops <= 0:
        raise LlmkitError("tokens_per_second and peak_flops must be positive")
    per_token = training_flops(spec, seq_len, seq_len, causal, inventory).total / seq_len
    return tokens_per_second * per_token / peak_flops
