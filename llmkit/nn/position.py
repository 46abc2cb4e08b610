"""Positional encodings (sheet section 4): how a transformer knows where a token is.

Absolute (added to the token embeddings once, at the bottom):
    sinusoidal_table(n, d)        PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)   (Vaswani 2017)
    learned                       a plain nn.Embedding(max_positions, d_model) (BERT, GPT-2): the
                                  families build it; nothing to compute here.

Relative (inside attention, every layer):
    ShawRelative(k, d_head)       learned key/value vectors per clipped distance clip(j - i, -k, k)
                                  (Shaw et al. 2018); attention adds q_i . a^K_ij to the scores and
                                  sum_j w_ij a^V_ij to the output (pass it as ``Attention.relative``).
    t5_relative_bucket(...)       T5's log-spaced distance buckets (Raffel et al. 2020).
    T5RelativeBias(...)           a learned scalar per (bucket, head): additive bias [1, heads, q, kv].
    alibi_slopes(n) / alibi_bias  a fixed per-head linear penalty m_h (j - i)   (Press et al. 2022).
    RoPE                          rotates q and k so q_m . k_n depends only on m - n   (Su et al. 2021).
    xPos                          RoPE times a per-pair decay zeta^(m/scale_base)      (Sun et al. 2022).

Additive biases (T5, ALiBi) are handed to attention as ``Attention(..., position_bias=...)``;
they broadcast against the mask: [1|batch, heads, q, kv].

RoPE rotates each pair of query/key features by an angle proportional to the position m:

    theta_i = base^(-2i / d_rot)                i = 0 .. d_rot/2 - 1
    [x'_a]   [cos(m theta_i)  -sin(m theta_i)] [x_a]
    [x'_b] = [sin(m theta_i)   cos(m theta_i)] [x_b]

(The sheet writes theta_i = 10000^(-2i/d_model); the exponent's denominator is the
rotated head width d_rot = d_head * rotary_fraction, not d_model.)

Which features form a pair is the layout:

    half-split (HF LLaMA, GPT-NeoX, ours):   pair i = (x[i], x[i + d_rot/2])     apply_rope_half
        x = [ a0 a1 a2 a3 | b0 b1 b2 b3 ]       rotate_half(x) = [-b0 -b1 -b2 -b3 | a0 a1 a2 a3]
    interleaved (Meta, llama.cpp GGUF):      pair i = (x[2i], x[2i + 1])          apply_rope_interleaved
        x = [ a0 b0 a1 b1 a2 b2 a3 b3 ]

The two differ by a fixed permutation of the Q/K projection rows, which io/ undoes
once at load time, so the model only ever rotates half-split pairs; the interleaved
form is here for checking that claim and for the pictures.

Context-extension scalings are entries of ROPE_SCALINGS, each mapping
(spec, seq_len) to (inv_freq, attention_scale), the shape of transformers'
ROPE_INIT_FUNCTIONS: linear, dynamic (NTK), yarn, llama3, longrope (Phi-3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from llmkit import kernels
from llmkit.spec import ModelSpec, SpecError

# -- absolute: sinusoidal ---------------------------------------------------------------------


def sinusoidal_table(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """[n_positions, d_model]: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)) (Vaswani 2017, §3.5).

    The same interleaved layout as DistilBERT's ``create_sinusoidal_embeddings``.
    """
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [n, 1]
    inv = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # [ceil(d/2)]
    angles = pos * inv  # [n, ceil(d/2)]
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles[:, : d_model // 2].cos()
    return table.float()


# -- relative: Shaw et al. -----------------------------------------------------------------------


def shaw_relative_index(q_positions: torch.Tensor, k_positions: torch.Tensor, max_distance: int) -> torch.Tensor:
    """[q, kv] indices clip(j - i, -k, k) + k into a table of 2k + 1 distances (Shaw et al. 2018, eq. 3)."""
    distance = k_positions[None, :] - q_positions[:, None]  # [q, kv]
    return distance.clamp(-max_distance, max_distance) + max_distance


class ShawRelative(nn.Module):
    """Learned relative key and value vectors a^K, a^V [2k + 1, d_head], shared by all heads (Shaw et al. 2018).

        e_ij = q_i . (k_j + a^K_ij) / sqrt(d)        z_i = sum_j softmax(e)_ij (v_j + a^V_ij)
    """

    def __init__(self, max_distance: int, d_head: int) -> None:
        super().__init__()
        if max_distance <= 0:
            raise SpecError(f"Shaw relative positions need a positive clipping distance; got {max_distance}")
        self.max_distance = max_distance
        self.key = nn.Embedding(2 * max_distance + 1, d_head)
        self.value = nn.Embedding(2 * max_distance + 1, d_head)

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a^K, a^V), each [q, kv, d_head], for query and key positions [q], [kv]."""
        index = shaw_relative_index(q_positions, k_positions, self.max_distance)  # [q, kv]
        return self.key(index), self.value(index)


# -- relative: T5 buckets --------------------------------------------------------------------------


def t5_relative_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """Bucket of each distance j - i: exact below num_buckets/2 (per side), log-spaced up to max_distance (Raffel 2020).

        bidirectional: half the buckets for keys after the query (j > i), half for the rest;
        causal: only j <= i counts (later keys share bucket 0, they are masked anyway).
    """
    buckets = torch.zeros_like(relative_position, dtype=torch.long)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -relative_position.clamp(max=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(nn.Module):
    """A learned scalar per (distance bucket, head), added to the attention scores (T5; only layer 0 owns one).

    Parameter: ``relative_attention_bias.weight`` [n_buckets, n_heads] (transformers' name).
    """

    def __init__(self, n_buckets: int, n_heads: int, max_distance: int, bidirectional: bool) -> None:
        super().__init__()
        self.n_buckets, self.max_distance, self.bidirectional = n_buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(n_buckets, n_heads)

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        """Additive bias [1, heads, q, kv] for query positions [q] and key positions [kv]."""
        relative = k_positions[None, :] - q_positions[:, None]  # [q, kv]: memory - query
        buckets = t5_relative_bucket(relative, self.bidirectional, self.n_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # [1, heads, q, kv]


# -- relative: ALiBi ----------------------------------------------------------------------------------


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """[n_heads] slopes m_h = 2^(-8h/n), h = 1..n, for n a power of two (Press et al. 2022, §3).

    Otherwise: the slopes of the nearest smaller power of two p, then every other slope
    of 2p (2^(-4/p)^(1, 3, 5, ...)) until n heads have one, as the paper's code and BLOOM do.
    """
    if n_heads <= 0:
        raise SpecError(f"ALiBi needs a positive head count; got {n_heads}")
    p = 2 ** math.floor(math.log2(n_heads))
    slopes = (2.0 ** (-8.0 / p)) ** torch.arange(1, p + 1, dtype=torch.float64)
    if p < n_heads:
        extra = (2.0 ** (-4.0 / p)) ** torch.arange(1, 2 * (n_heads - p), 2, dtype=torch.float64)
        slopes = torch.cat((slopes, extra))
    return slopes.float()


def alibi_bias(
    slopes: torch.Tensor, q_positions: torch.Tensor, k_positions: torch.Tensor, bidirectional: bool = False
) -> torch.Tensor:
    """Additive bias [1, heads, q, kv] = m_h (j - i) (causal; future keys are masked anyway) or -m_h |j - i|."""
    distance = (k_positions[None, :] - q_positions[:, None]).float()  # [q, kv]
    if bidirectional:
        distance = -distance.abs()
    return (slopes[:, None, None] * distance)[None]  # [1, heads, q, kv]


# -- RoPE ---------------------------------------------------------------------------------------------

RopeScalingFn = Callable[[ModelSpec, "int | None"], tuple[torch.Tensor, float]]


def rope_dims(spec: ModelSpec) -> int:
    """d_rot = d_head * rotary_fraction: how many features of each head are rotated."""
    return int(spec.d_head * spec.rotary_fraction)


def rope_base_inv_freq(base: float, d_rot: int) -> torch.Tensor:
    """inv_freq_i = base^(-2i / d_rot), i < d_rot/2 (RoFormer eq. 15), in float32."""
    exponents = torch.arange(0, d_rot, 2, dtype=torch.int64).float() / d_rot  # [d_rot/2]
    return 1.0 / (base**exponents)


def _scaling_field(spec: ModelSpec, name: str):
    value = getattr(spec.rope_scaling, name)
    if value is None:
        raise SpecError(f"model {spec.name!r}: RoPE scaling {spec.rope_scaling.kind!r} needs {name}")
    return value


def _linear(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Position interpolation: inv_freq / factor (Chen et al. 2023)."""
    return rope_base_inv_freq(spec.rope_theta, rope_dims(spec)) / spec.rope_scaling.factor, 1.0


def _dynamic(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Dynamic NTK: base' = base (f L / L_max - (f - 1))^(d / (d - 2)), L = max(seq_len, L_max) (bloc97, emozilla 2023)."""
    d, f = rope_dims(spec), spec.rope_scaling.factor
    length = max(seq_len or 0, spec.max_positions)
    base = spec.rope_theta * (f * length / spec.max_positions - (f - 1)) ** (d / (d - 2))
    return rope_base_inv_freq(base, d), 1.0


def _yarn_ramp(low: float, high: float, n: int) -> torch.Tensor:
    """[n] clamp((i - low) / (high - low), 0, 1): 0 keeps a frequency, 1 interpolates it (YaRN eq. 18)."""
    high = high + 0.001 if low == high else high
    return ((torch.arange(n, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)


def _yarn(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """YaRN: interpolate low frequencies by 1/factor, keep high ones, ramp between (Peng et al. 2023); scale 0.1 ln f + 1."""
    s, d, base = spec.rope_scaling, rope_dims(spec), spec.rope_theta
    original = _scaling_field(spec, "original_max_positions")
    scale = s.attention_factor if s.attention_factor is not None else (0.1 * math.log(s.factor) + 1 if s.factor > 1 else 1.0)

    def dim_of(rotations: float) -> float:  # the pair index that turns `rotations` times over the original context
        return d * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_of(s.beta_fast or 32)), 0)
    high = min(math.ceil(dim_of(s.beta_slow or 1)), d - 1)
    inv_freq = rope_base_inv_freq(base, d)
    interpolate = _yarn_ramp(low, high, d // 2)  # [d/2]
    return inv_freq / s.factor * interpolate + inv_freq * (1 - interpolate), float(scale)


def _llama3(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Llama 3.1: wavelengths beyond L/low divided by factor, below L/high kept, smooth in between (Meta 2024)."""
    s = spec.rope_scaling
    original = _scaling_field(spec, "original_max_positions")
    low, high = _scaling_field(spec, "low_freq_factor"), _scaling_field(spec, "high_freq_factor")
    inv_freq = rope_base_inv_freq(spec.rope_theta, rope_dims(spec))
    wavelen = 2 * math.pi / inv_freq
    smooth = ((original / wavelen - low) / (high - low)).clamp(0, 1)  # 0: long waves, 1: short waves
    return (1 - smooth) * inv_freq / s.factor + smooth * inv_freq, 1.0


def _longrope(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """LongRoPE (Phi-3): inv_freq_i / ext_i, ext = long_factor past the original context else short_factor (Ding 2024)."""
    s = spec.rope_scaling
    original = _scaling_field(spec, "original_max_positions")
    factor = s.factor if s.factor != 1.0 else spec.max_positions / original
    scale = s.attention_factor
    if scale is None:
        scale = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
    ext = _scaling_field(spec, "long_factor" if seq_len and seq_len > original else "short_factor")
    return rope_base_inv_freq(spec.rope_theta, rope_dims(spec)) / torch.tensor(ext, dtype=torch.float32), float(scale)


ROPE_SCALINGS: dict[str, RopeScalingFn] = {
    "linear": _linear,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "longrope": _longrope,
}


def rope_inv_freq(spec: ModelSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq [d_rot/2], attention_scale) for the spec's RoPE and its scaling; seq_len matters to dynamic / longrope."""
    if spec.rope_scaling is None:
        return rope_base_inv_freq(spec.rope_theta, rope_dims(spec)), 1.0
    kind = spec.rope_scaling.kind
    if kind not in ROPE_SCALINGS:
        known = ", ".join(sorted(ROPE_SCALINGS))
        raise SpecError(f"model {spec.name!r}: RoPE scaling {kind!r} is not implemented (implemented: {known})")
    return ROPE_SCALINGS[kind](spec, seq_len)


def rope_cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, attention_scale: float = 1.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(m theta), sin(m theta) for each position m, both halves, ready to broadcast over heads: [batch, 1, seq, d_rot]."""
    angles = positions[..., None].float() * inv_freq  # [batch, seq, d_rot/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # [batch, 1, seq, d_rot]
    return (angles.cos() * attention_scale).to(dtype), (angles.sin() * attention_scale).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[a | b] -> [-b | a]: the 90-degree turn of every half-split pair."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x cos + rotate_half(x) sin on the first d_rot features of each head (half-split layout).

    x: [batch, heads, seq, d_head]; cos, sin: [batch, 1, seq, d_rot] (from rope_cos_sin).
    """
    d_rot = cos.shape[-1]
    if d_rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rot, rest = x[..., :d_rot], x[..., d_rot:]
    return torch.cat((rot * cos + rotate_half(rot) * sin, rest), dim=-1)


def apply_rope_half_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rope_half, written into x when the C kernel can (x: a fresh projection output, no autograd).

    Returns the rotated tensor: x itself (kernel) or a new one (the PyTorch formula).
    """
    b, _, t, _ = x.shape
    if (
        x.dtype == cos.dtype == sin.dtype == torch.float32
        and x.stride(-1) == 1
        and cos.shape[-1] % 2 == 0
        and cos.shape[0] in (1, b) and cos.shape[2] == t
        and not (torch.is_grad_enabled() and x.requires_grad)
        and x.device.type == "cpu"
        and kernels.enabled()
    ):
        return kernels.rope_half_(x, cos, sin)
    return apply_rope_half(x, cos, sin)


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The same rotation on interleaved pairs (x[2i], x[2i+1]) (Meta's LLaMA, GGUF); cos, sin as for apply_rope_half.

    x: [batch, heads, seq, d_head] with its first d_rot features rotated.
    """
    d_rot = cos.shape[-1]
    half_cos, half_sin = cos[..., : d_rot // 2], sin[..., : d_rot // 2]  # [batch, 1, seq, d_rot/2]
    rot = x[..., :d_rot].unflatten(-1, (d_rot // 2, 2))  # [batch, heads, seq, d_rot/2, 2]
    a, b = rot[..., 0], rot[..., 1]
    turned = torch.stack((a * half_cos - b * half_sin, a * half_sin + b * half_cos), dim=-1).flatten(-2)
    return torch.cat((turned, x[..., d_rot:]), dim=-1)


# -- xPos ------------------------------------------------------------------------------------------


def xpos_scale(
    d_rot: int, positions: torch.Tensor, scale_base: float = 512.0, gamma: float = 0.4, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[batch, 1, seq, d_rot] zeta_i^(m / scale_base), zeta_i = (2i/d + gamma) / (1 + gamma), both halves (Sun 2022, eq. 9).

    Queries are multiplied by it and keys divided by it, so q_m . k_n gains zeta^((m - n)/scale_base):
    a decay with distance on top of RoPE's rotation.
    """
    zeta = (torch.arange(0, d_rot, 2, dtype=torch.float64) / d_rot + gamma) / (1 + gamma)  # [d_rot/2]
    power = positions[..., None].double() / scale_base  # [batch, seq, 1]
    scale = zeta**power  # [batch, seq, d_rot/2]
    return torch.cat((scale, scale), dim=-1)[:, None].to(dtype)  # [batch, 1, seq, d_rot]


def apply_xpos(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RoPE(q) * scale, RoPE(k) / scale) in the half-split layout; scale from xpos_scale at the same positions."""
    return apply_rope_half(q, cos * scale, sin * scale), apply_rope_half(k, cos / scale, sin / scale)
