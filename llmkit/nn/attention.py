r"""Scaled dot-product attention (sheet section 1) and the attention layer (sections 1, 10).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + B + M) V        (Vaswani et al. 2017)

B is an optional additive position bias (T5 buckets, ALiBi), M the mask: 0 where a
query may look, the dtype's minimum where it may not. A :class:`Mask` describes the
rule (causal or not, a sliding window, padded keys) and each backend turns it into
numbers only where it needs them:

    "reference"  the formula above, written out (GQA by repeating K/V heads); the only
                 backend with Shaw relative terms and with ``return_probs``
    "sdpa"       torch.nn.functional.scaled_dot_product_attention (fused kernels)
    "tiled"      flash-style: blocks of keys with an online softmax, never the full
                 [q, kv] matrix (Dao et al. 2022, Rabe & Staats 2021), plain PyTorch

All three share one signature ``fn(q, k, v, mask, scale) -> out`` (ATTENTION_BACKENDS).

GQA: n_heads query heads share n_kv_heads key/value heads in equal groups;
query head h reads KV head h // group (group = n_heads / n_kv_heads):

    n_heads = 6, n_kv_heads = 2, group = 3
    Q heads:   q0 q1 q2 | q3 q4 q5
                \ | /      \ | /
    KV heads:     kv0        kv1          MHA: group 1;  MQA: one KV head

The layer, for the families (``Attention(spec, layer, cross=False)``)::

    forward(x, rope=None, mask=Mask(), cache=None, *, kv_source=None, position_bias=None,
            positions=None) -> [batch, seq, d_model]

    x              [batch, seq, d_model]: the queries' input (and the keys' too, unless cross)
    rope           (cos, sin) from position.rope_cos_sin, or None (no RoPE)
    mask           a Mask; encoders: Mask(padding=attention_mask); decoders: build_mask(...)
    cache          self-attention: a KV cache (generate/cache.py: ``update(layer, k, v)``);
                   cross-attention: a CrossKVCache, filled on the first call and reused after
    kv_source      cross-attention only: the encoder states [batch, src, d_model]
    position_bias  additive [1|batch, heads, q, kv] (T5RelativeBias, alibi_bias)
    positions      [q] query positions and, from them, key positions, for ``relative`` (Shaw)

Parameters: ``q``, ``k``, ``v``, ``o`` (nn.Linear, biases per spec.qkv_bias / out_bias).
Settings (plain attributes, change them after building): ``backend`` ("sdpa"), ``scale``
(None = 1/sqrt(d_head); T5 uses 1.0 and gets it from spec.position == "t5"), ``relative``
(a position.ShawRelative or None), ``record_probs`` (False; when True the layer runs the
reference backend and keeps the attention probabilities [batch, heads, q, kv] in ``probs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from llmkit import kernels
from llmkit.errors import LlmkitError
from llmkit.nn.linear import Linear
from llmkit.nn.position import ShawRelative, apply_rope_half_
from llmkit.spec import ModelSpec


@dataclass(frozen=True)
class Mask:
    """What each query may see, as a rule; ``hidden(...)`` turns any tile of it into a boolean [b|1, 1, q, kv].

        is_causal   key j visible to query i iff j <= past + i (keys and queries count from the same start)
        past        keys held before the first query (a KV cache)
        window      if set, also j > past + i - window (Mistral's sliding window)
        padding     [batch, kv], 1 = real key, 0 = padding (hidden from every query)
        bias        an extra additive term [b|1, heads|1, q, kv] (position biases, custom masks)
        dtype       the dtype of the additive forms
    """

    is_causal: bool = False
    past: int = 0
    window: int | None = None
    padding: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    dtype: torch.dtype = torch.float32

    @property
    def is_plain_causal(self) -> bool:
        """True when the rule is exactly SDPA's is_causal (no cache in front, no window, no padding, no bias)."""
        return self.is_causal and self.past == 0 and self.window is None and self.padding is None and self.bias is None

    def hidden(self, q_start: int, q_len: int, k_start: int, k_len: int, device=None) -> torch.Tensor | None:
        """Boolean [b|1, 1, q_len, k_len]: True where query q_start+i may not see key k_start+j (None: all visible)."""
        if not self.is_causal and self.window is None and self.padding is None:
            return None
        q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None] + self.past  # [q, 1]
        k_pos = torch.arange(k_start, k_start + k_len, device=device)[None, :]  # [1, kv]
        hide = torch.zeros(q_len, k_len, dtype=torch.bool, device=device)
        if self.is_causal:
            hide |= k_pos > q_pos
        if self.window is not None:
            hide |= k_pos <= q_pos - self.window
        hide = hide[None, None]  # [1, 1, q, kv]
        if self.padding is not None:
            hide = hide | (self.padding[:, None, None, k_start : k_start + k_len] == 0)  # [b, 1, q, kv]
        return hide

    @cached_property
    def _dense_cache(self) -> dict:
        return {}

    def additive(self, q_len: int, kv_len: int, device=None) -> torch.Tensor | None:
        """The whole mask as one additive tensor [b|1, heads|1, q, kv] (0 / dtype minimum, plus bias); cached."""
        key = (q_len, kv_len, str(device))
        if key not in self._dense_cache:
            hide = self.hidden(0, q_len, 0, kv_len, device)
            out = self.bias.to(self.dtype) if self.bias is not None else None
            if hide is not None:
                base = out if out is not None else torch.zeros((), dtype=self.dtype, device=device)
                out = base.masked_fill(hide, torch.finfo(self.dtype).min)
            self._dense_cache[key] = out
        return self._dense_cache[key]


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
    mask = Mask(is_causal=True, past=kv_len - q_len, window=window, dtype=dtype)
    return mask.additive(q_len, kv_len, device)[0, 0]


def build_mask(
    padding: torch.Tensor | None, q_len: int, past: int, dtype: torch.dtype, window: int | None = None
) -> Mask:
    """The causal Mask for q_len new queries after ``past`` cached keys; padding: [batch, past + q_len], 1 = real token.

    A window that cannot hide anything yet (past + q_len <= window) is dropped, so plain prefill
    stays on SDPA's built-in is_causal and one new token with nothing to hide needs no mask at all.
    """
    kv_len = past + q_len
    if window is not None and kv_len <= window:
        window = None
    if padding is not None:
        padding = padding[:, :kv_len]
    if padding is None and window is None and q_len == 1:
        return Mask(dtype=dtype)  # the one new query sees every key
    return Mask(is_causal=True, past=past, window=window, padding=padding, dtype=dtype)


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """[batch, n_kv, seq, d] -> [batch, n_kv * group, seq, d]: each KV head repeated for its query group."""
    if group == 1:
        return x
    b, n_kv, s, d = x.shape
    return x[:, :, None].expand(b, n_kv, group, s, d).reshape(b, n_kv * group, s, d)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Mask,
    scale: float | None = None,
    relative: tuple[torch.Tensor, torch.Tensor] | None = None,
    return_probs: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k) + M) V, written out (Vaswani et al. 2017, eq. 1); Shaw terms if ``relative``.

    q: [batch, n_heads, q, d]; k, v: [batch, n_kv, kv, d] -> [batch, n_heads, q, d]
    (and the probabilities [batch, n_heads, q, kv] with ``return_probs``).
    relative: (a^K, a^V), each [q, kv, d] (position.ShawRelative): scores += q_i . a^K_ij, out += sum_j p_ij a^V_ij.
    """
    group = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # [batch, n_heads, kv, d]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-2, -1)  # [batch, n_heads, q, kv]
    if relative is not None:
        scores = scores + torch.einsum("bhqd,qkd->bhqk", q, relative[0])
    scores = scores * scale
    additive = mask.additive(q.shape[2], k.shape[2], q.device)
    if additive is not None:
        scores = scores + additive
    probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)  # each row sums to 1
    out = probs @ v  # [batch, n_heads, q, d]
    if relative is not None:
        out = out + torch.einsum("bhqk,qkd->bhqd", probs, relative[1])
    return (out, probs) if return_probs else out


def decode_visibility(mask: Mask, q_len: int, kv_len: int) -> tuple[int, torch.Tensor | None] | None:
    """For one query that is the newest token: (first visible key, padding [batch, kv] or None); None otherwise.

    Causally the newest query sees every key; a sliding window hides keys j <= past - window.
    """
    if q_len != 1 or mask.bias is not None or (mask.is_causal and mask.past + 1 != kv_len):
        return None
    start = max(0, mask.past + 1 - mask.window) if mask.window is not None else 0
    return start, mask.padding


def attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, scale: float | None = None
) -> torch.Tensor:
    """The same attention through torch's fused scaled_dot_product_attention (GQA built in).

    Decoding one token, the C kernel (llmkit.kernels.attend_one) reads the cache in place: one pass
    per head instead of SDPA's ~0.1 ms set-up. Without it, a group's queries are simply rows of one KV
    head's attention: [batch, n_kv, group, d] against [batch, n_kv, kv, d], no K/V copies.
    """
    b, n_heads, q_len, d = q.shape
    n_kv = k.shape[1]
    visible = decode_visibility(mask, q_len, k.shape[2])
    if visible is not None and kernels.enabled() and kernels.attend_one_supported(q, k, v):
        return kernels.attend_one(q, k, v, d**-0.5 if scale is None else scale, *visible)
    additive = None if mask.is_plain_causal else mask.additive(q_len, k.shape[2], q.device)
    if q_len == 1 and additive is None and n_kv != n_heads:
        rows = q.reshape(b, n_kv, n_heads // n_kv, d)  # [batch, n_kv, group, d]
        return F.scaled_dot_product_attention(rows, k, v, scale=scale).view(b, n_heads, 1, d)
    bias = additive.to(q.dtype) if additive is not None else None
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias, is_causal=mask.is_plain_causal, scale=scale, enable_gqa=n_kv != n_heads
    )


TILE = 256  # keys per block of attention_tiled


def attention_tiled(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, scale: float | None = None, block: int = TILE
) -> torch.Tensor:
    """Flash-style attention: keys in blocks, an online softmax, never the [q, kv] matrix (Dao et al. 2022, alg. 1).

    Per block B of keys, with running row max m, denominator l and numerator acc:
        s = q K_B^T * scale (+ mask);  m' = max(m, max_j s)
        l = l e^(m - m') + sum_j e^(s - m');  acc = acc e^(m - m') + e^(s - m') V_B;  out = acc / l
    Memory: [batch, heads, q, block] at a time, O(n) for a fixed block. Causal without padding,
    the queries before a block (which see none of it) are left out: half the work.
    """
    group = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # [batch, n_heads, kv, d]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    b, h, q_len, d = q.shape
    kv_len, lowest = k.shape[2], torch.finfo(torch.float32).min
    row_max = torch.full((b, h, q_len, 1), lowest, dtype=torch.float32, device=q.device)
    denom = torch.zeros(b, h, q_len, 1, dtype=torch.float32, device=q.device)
    acc = torch.zeros(b, h, q_len, d, dtype=torch.float32, device=q.device)
    skip_future = mask.is_causal and mask.padding is None  # then every query sees a key: skipping is exact
    for start in range(0, kv_len, block):
        n = min(block, kv_len - start)
        first = max(0, start - mask.past) if skip_future else 0  # queries before it see nothing of this block
        if first >= q_len:
            break
        rows = slice(first, q_len)
        s = (q[:, :, rows] @ k[:, :, start : start + n].transpose(-2, -1)).float() * scale  # [batch, heads, q', n]
        if mask.bias is not None:
            bias = mask.bias[..., start : start + n]
            s = s + (bias if bias.shape[-2] == 1 else bias[..., rows, :]).float()
        hide = mask.hidden(first, q_len - first, start, n, q.device)
        if hide is not None:
            s = s.masked_fill(hide, lowest)
        old_max = row_max[:, :, rows]
        new_max = torch.maximum(old_max, s.amax(-1, keepdim=True))  # [batch, heads, q', 1]
        decay, p = torch.exp(old_max - new_max), torch.exp(s - new_max)  # p: [batch, heads, q', n]
        denom[:, :, rows] = denom[:, :, rows] * decay + p.sum(-1, keepdim=True)
        acc[:, :, rows] = acc[:, :, rows] * decay + p @ v[:, :, start : start + n].float()
        row_max[:, :, rows] = new_max
    return (acc / denom).to(v.dtype)  # [batch, heads, q, d]


AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mask, "float | None"], torch.Tensor]
ATTENTION_BACKENDS: dict[str, AttentionFn] = {
    "reference": attention_reference,
    "sdpa": attention_sdpa,
    "tiled": attention_tiled,
}


class CrossKVCache:
    """The encoder's keys and values per decoder layer: computed on the first decoding step, reused after.

        kv[layer] = (k, v), each [batch, n_kv, src, d_head]
    """

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def reset(self) -> None:
        self.kv.clear()

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.kv.values())


class Attention(nn.Module):
    """Multi-head attention with n_kv_heads K/V heads (MHA, GQA, MQA): self or cross, RoPE, biases, caches.

    Projections: q [d_model -> n_heads d_head], k, v [d_model -> n_kv d_head], o [n_heads d_head -> d_model].
    """

    def __init__(self, spec: ModelSpec, layer: int, cross: bool = False) -> None:
        super().__init__()
        self.layer, self.cross = layer, cross
        self.n_heads, self.n_kv, self.d_head = spec.n_heads, spec.kv_heads, spec.d_head
        self.backend = "sdpa"
        self.scale: float | None = 1.0 if spec.position == "t5" else None
        self.relative: ShawRelative | None = None
        self.record_probs = False
        self.probs: torch.Tensor | None = None
        d_q, d_kv = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head
        self.q = Linear(spec.d_model, d_q, bias=spec.qkv_bias)
        self.k = Linear(spec.d_model, d_kv, bias=spec.qkv_bias)
        self.v = Linear(spec.d_model, d_kv, bias=spec.qkv_bias)
        self.o = Linear(d_q, spec.d_model, bias=spec.out_bias)

    def heads(self, proj: nn.Linear, x: torch.Tensor, n: int) -> torch.Tensor:
        """[batch, seq, d_model] -> [batch, n, seq, d_head] through one projection."""
        b, t, _ = x.shape
        return proj(x).view(b, t, n, self.d_head).transpose(1, 2)

    def keys_values(self, x: torch.Tensor, rope, cache, kv_source: torch.Tensor | None):
        """(k, v) [batch, n_kv, kv, d_head]: this call's own (plus the cache), or the encoder's (cached once)."""
        if self.cross:
            if cache is not None and self.layer in cache.kv:
                return cache.kv[self.layer]
            if kv_source is None:
                raise LlmkitError("cross-attention needs the encoder states (kv_source) on its first call")
            kv = self.heads(self.k, kv_source, self.n_kv), self.heads(self.v, kv_source, self.n_kv)
            if cache is not None:
                cache.kv[self.layer] = kv
            return kv
        k, v = self.heads(self.k, x, self.n_kv), self.heads(self.v, x, self.n_kv)
        if rope is not None:
            k = apply_rope_half_(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # [batch, n_kv, past + seq, d_head]
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: Mask = Mask(),
        cache=None,
        *,
        kv_source: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, _ = x.shape  # [batch, seq, d_model]
        q = self.heads(self.q, x, self.n_heads)  # [batch, n_heads, seq, d_head]
        if rope is not None and not self.cross:
            q = apply_rope_half_(q, *rope)
        k, v = self.keys_values(x, rope, cache, kv_source)  # [batch, n_kv, kv, d_head]
        if position_bias is not None:
            bias = position_bias if mask.bias is None else mask.bias + position_bias
            mask = replace(mask, bias=bias)
        y = self.attend(q, k, v, mask, positions)  # [batch, n_heads, seq, d_head]
        return self.o(y.transpose(1, 2).reshape(b, t, self.n_heads * self.d_head))

    def attend(self, q, k, v, mask: Mask, positions: torch.Tensor | None) -> torch.Tensor:
        """The chosen backend, or the reference one when Shaw terms or recorded probabilities need it."""
        if self.relative is None and not self.record_probs:
            return ATTENTION_BACKENDS[self.backend](q, k, v, mask, self.scale)
        relative = None
        if self.relative is not None:
            q_pos = positions if positions is not None else torch.arange(mask.past, mask.past + q.shape[2])
            relative = self.relative(q_pos.to(q.device), torch.arange(k.shape[2], device=q.device))
        out, probs = attention_reference(q, k, v, mask, self.scale, relative, return_probs=True)
        self.probs = probs.detach() if self.record_probs else None
        return out
