"""Positional encodings (sheet section 4). Today: RoPE with the half-split pair layout.

RoPE (Su et al. 2021, "RoFormer") rotates each pair of query/key features by an
angle proportional to the position m, so q_m . k_n depends only on m - n:

    theta_i = base^(-2i / d_rot)                i = 0 .. d_rot/2 - 1
    [x'_a]   [cos(m theta_i)  -sin(m theta_i)] [x_a]
    [x'_b] = [sin(m theta_i)   cos(m theta_i)] [x_b]

(The sheet writes theta_i = 10000^(-2i/d_model); the exponent's denominator is the
rotated head width d_rot = d_head * rotary_fraction, not d_model.)

Which features form a pair is the layout:

    half-split (HF LLaMA, GPT-NeoX, ours):   pair i = (x[i], x[i + d_rot/2])
        x = [ a0 a1 a2 a3 | b0 b1 b2 b3 ]       rotate_half(x) = [-b0 -b1 -b2 -b3 | a0 a1 a2 a3]
    interleaved (Meta, llama.cpp GGUF):      pair i = (x[2i], x[2i + 1])
        x = [ a0 b0 a1 b1 a2 b2 a3 b3 ]

The two differ by a fixed permutation of the Q/K projection rows, which io/ undoes
once at load time, so the model only ever rotates half-split pairs.

Context-extension scalings (linear, dynamic NTK, YaRN, Llama 3) are entries of
ROPE_SCALINGS: each maps (spec, inv_freq) to (inv_freq, attention_scale), the
shape of transformers' ROPE_INIT_FUNCTIONS.
"""

from __future__ import annotations

from typing import Callable

import torch

from llmkit.spec import ModelSpec, SpecError

RopeScalingFn = Callable[[ModelSpec, torch.Tensor], tuple[torch.Tensor, float]]


def rope_dims(spec: ModelSpec) -> int:
    """d_rot = d_head * rotary_fraction: how many features of each head are rotated."""
    return int(spec.d_head * spec.rotary_fraction)


def rope_base_inv_freq(base: float, d_rot: int) -> torch.Tensor:
    """inv_freq_i = base^(-2i / d_rot), i < d_rot/2 (RoFormer eq. 15), in float32."""
    exponents = torch.arange(0, d_rot, 2, dtype=torch.int64).float() / d_rot  # [d_rot/2]
    return 1.0 / (base**exponents)


def _linear(spec: ModelSpec, inv_freq: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Position interpolation: inv_freq / factor (Chen et al. 2023)."""
    assert spec.rope_scaling is not None
    return inv_freq / spec.rope_scaling.factor, 1.0


ROPE_SCALINGS: dict[str, RopeScalingFn] = {
    "linear": _linear,
    # "dynamic", "yarn", "llama3", "longrope": issue 4 adds them here.
}


def rope_inv_freq(spec: ModelSpec) -> tuple[torch.Tensor, float]:
    """(inv_freq [d_rot/2], attention_scale) for the spec's RoPE and its scaling, if any."""
    inv_freq = rope_base_inv_freq(spec.rope_theta, rope_dims(spec))
    if spec.rope_scaling is None:
        return inv_freq, 1.0
    kind = spec.rope_scaling.kind
    if kind not in ROPE_SCALINGS:
        known = ", ".join(sorted(ROPE_SCALINGS))
        raise SpecError(f"model {spec.name!r}: RoPE scaling {kind!r} is not implemented yet (implemented: {known})")
    return ROPE_SCALINGS[kind](spec, inv_freq)


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
