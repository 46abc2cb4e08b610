r"""Scaled dot-product attention (sheet section 1) and the attention layer (sections 1, 10).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V        (Vaswani et al. 2017)

M is the mask, added to the scores: 0 where a query may look, -inf (or the dtype's
minimum) where it may not. Two backends compute the same thing:

    "reference"  the formula above, written out (and GQA by repeating K/V heads)
    "sdpa"       torch.nn.functional.scaled_dot_product_attention (fused kernels)

GQA: n_heads query heads share n_kv_heads key/value heads in equal groups;
query head h reads KV head h // group (group = n_heads / n_kv_heads):

    n_heads = 6, n_kv_heads = 2, group = 3
    Q heads:   q0 q1 q2 | q3 q4 q5
                \ | /      \ | /
    KV heads:     kv0        kv1          MHA: group 1;  MQA: one KV head
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.nn.position import apply_rope_half
from llmkit.spec import ModelSpec


@dataclass(frozen=True)
class Mask:
    """What a query may see: an additive bias [batch|1, 1, q, kv] and/or the plain causal rule.

    ``is_causal`` means "key j visible to query i iff j <= i" with queries and keys
    starting at the same position (no cache before them); ``bias`` covers every
    other case (padding, a cache in front, later: windows).
    """

    bias: torch.Tensor | None = None
    is_causal: bool = False


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """[batch, n_kv, seq, d] -> [batch, n_kv * group, seq, d]: each KV head repeated for its query group."""
    if group == 1:
        return x
    b, n_kv, s, d = x.shape
    return x[:, :, None].expand(b, n_kv, group, s, d).reshape(b, n_kv * group, s, d)


def causal_bias(
    q_len: int, kv_len: int, dtype: torch.dtype, window: int | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """[q, kv] additive mask: query i (at slot kv_len - q_len + i) sees keys j <= i, and j > i - window if set.

        q_len 3, kv_len 5 (2 cached)     with window 2
            k: 0 1 2 3 4                    k: 0 1 2 3 4
        q2:    x x x . .                q2:    . x x . .
        q3:    x x x x .                q3:    . . x x .
        q4:    x x x x x                q4:    . . . x x
    """
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # [q, 1]
    k_pos = torch.arange(kv_len, device=device)[None, :]  # [1, kv]
    hidden = k_pos > q_pos
    if window is not None:
        hidden |= k_pos <= q_pos - window
    return torch.zeros(q_len, kv_len, dtype=dtype, device=device).masked_fill(hidden, torch.finfo(dtype).min)


def build_mask(
    padding: torch.Tensor | None, q_len: int, past: int, dtype: torch.dtype, window: int | None = None
) -> Mask:
    """The Mask for q_len new queries after ``past`` cached keys; padding: [batch, past + q_len], 1 = real token.

    Plain causal prefill uses SDPA's built-in is_causal; one new token with nothing to hide needs no mask.
    """
    kv_len = past + q_len
    windowed = window is not None and kv_len > window
    if padding is None and not windowed:
        if q_len == 1:
            return Mask()
        if past == 0:
            return Mask(is_causal=True)
    bias = causal_bias(q_len, kv_len, dtype, window, padding.device if padding is not None else None)[None, None]
    if padding is not None:
        hidden = padding[:, None, None, :kv_len] == 0  # [batch, 1, 1, kv]
        bias = bias.masked_fill(hidden, torch.finfo(dtype).min)  # [batch, 1, q, kv]
    return Mask(bias=bias)


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, scale: float | None = None
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k) + M) V, written out (Vaswani et al. 2017, eq. 1).

    q: [batch, n_heads, q, d]; k, v: [batch, n_kv, kv, d] -> [batch, n_heads, q, d].
    """
    group = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # [batch, n_heads, kv, d]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # [batch, n_heads, q, kv]
    if mask.is_causal:
        scores = scores + causal_bias(q.shape[2], k.shape[2], scores.dtype, device=scores.device)
    if mask.bias is not None:
        scores = scores + mask.bias
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)  # each row sums to 1
    return weights @ v  # [batch, n_heads, q, d]


def attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, scale: float | None = None
) -> torch.Tensor:
    """The same attention through torch's fused scaled_dot_product_attention (GQA built in).

    Decoding one token with nothing masked, a group's queries are simply rows of one
    KV head's attention: [batch, n_kv, group, d] against [batch, n_kv, kv, d], no K/V copies.
    """
    b, n_heads, q_len, d = q.shape
    n_kv = k.shape[1]
    if q_len == 1 and mask.bias is None and n_kv != n_heads:
        rows = q.reshape(b, n_kv, n_heads // n_kv, d)  # [batch, n_kv, group, d]
        return F.scaled_dot_product_attention(rows, k, v, scale=scale).view(b, n_heads, 1, d)
    bias = mask.bias.to(q.dtype) if mask.bias is not None else None
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias, is_causal=mask.is_causal, scale=scale, enable_gqa=k.shape[1] != q.shape[1]
    )


AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mask, "float | None"], torch.Tensor]
ATTENTION_BACKENDS: dict[str, AttentionFn] = {"reference": attention_reference, "sdpa": attention_sdpa}


class Attention(nn.Module):
    """Multi-head attention with n_kv_heads K/V heads (MHA, GQA, MQA), RoPE, and a KV cache slot.

    Projections: q [d_model -> n_heads d_head], k, v [d_model -> n_kv d_head], o [n_heads d_head -> d_model].
    """

    def __init__(self, spec: ModelSpec, layer: int) -> None:
        super().__init__()
        self.layer, self.n_heads, self.n_kv, self.d_head = layer, spec.n_heads, spec.kv_heads, spec.d_head
        self.backend = "sdpa"
        d_q, d_kv = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
        self.q = nn.Linear(spec.d_model, d_q, bias=spec.qkv_bias)
        self.k = nn.Linear(spec.d_model, d_kv, bias=spec.qkv_bias)
        self.v = nn.Linear(spec.d_model, d_kv, bias=spec.qkv_bias)
        self.o = nn.Linear(d_q, spec.d_model, bias=spec.out_bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: Mask, cache=None) -> torch.Tensor:
        b, t, _ = x.shape  # [batch, seq, d_model]
        q = self.q(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # [batch, n_heads, seq, d_head]
        k = self.k(x).view(b, t, self.n_kv, self.d_head).transpose(1, 2)  # [batch, n_kv, seq, d_head]
        v = self.v(x).view(b, t, self.n_kv, self.d_head).transpose(1, 2)  # [batch, n_kv, seq, d_head]
        q, k = apply_rope_half(q, *rope), apply_rope_half(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # [batch, n_kv, past + seq, d_head]
        y = ATTENTION_BACKENDS[self.backend](q, k, v, mask, None)  # [batch, n_heads, seq, d_head]
        return self.o(y.transpose(1, 2).reshape(b, t, self.n_heads * self.d_head))
