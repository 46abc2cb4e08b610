"""Pictures of the sheet's mechanisms (section 4 positions, section 1 attention) as PNG files.

    position_pictures(out_dir)              sinusoidal.png, rope.png, alibi.png, t5_buckets.png
    attention_picture(probs, tokens, path)  one heat map per head of a [heads, q, kv] matrix

matplotlib is imported lazily with the non-interactive Agg backend, so importing llmkit
never needs it and nothing opens a window.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from llmkit.nn.position import (
    alibi_bias,
    alibi_slopes,
    rope_base_inv_freq,
    sinusoidal_table,
    t5_relative_bucket,
)


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def sinusoidal_picture(path: Path, n_positions: int = 128, d_model: int = 128) -> Path:
    """Heat map of the sinusoidal table PE[position, feature] (Vaswani 2017)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(sinusoidal_table(n_positions, d_model).numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set(title=f"Sinusoidal positions (d_model={d_model})", xlabel="feature (even: sin, odd: cos)", ylabel="position")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def rope_picture(path: Path, d_rot: int = 64, base: float = 10000.0, max_distance: int = 1024) -> Path:
    """Left: angle m theta_i of a few pairs vs position; right: mean cos((m - n) theta_i), RoPE's decay with distance."""
    plt = _pyplot()
    inv_freq = rope_base_inv_freq(base, d_rot)  # [d_rot/2]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    positions = torch.arange(64).float()
    for i in (0, 2, 4, 8, d_rot // 2 - 1):
        left.plot(positions, torch.remainder(positions * inv_freq[i], 2 * math.pi), label=f"pair {i}")
    left.set(title="RoPE: rotation angle per pair (mod 2π)", xlabel="position m", ylabel="angle m·θ_i")
    left.legend(fontsize=8)
    distance = torch.arange(max_distance + 1).float()
    similarity = torch.cos(distance[:, None] * inv_freq).mean(-1)  # q = k = all-ones: q·k / d after rotation
    right.plot(distance, similarity)
    right.set(title=f"RoPE: q·k of identical vectors vs distance (d_rot={d_rot}, base={base:g})",
              xlabel="distance m − n", ylabel="normalised dot product")
    return _save(fig, path)


def alibi_picture(path: Path, n_heads: int = 8, n: int = 24) -> Path:
    """ALiBi bias m_h (j - i) on causal positions for four of n_heads heads (Press et al. 2022)."""
    plt = _pyplot()
    slopes = alibi_slopes(n_heads)
    bias = alibi_bias(slopes, torch.arange(n), torch.arange(n))[0]  # [heads, n, n]
    bias = bias.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("nan"))
    heads = (0, n_heads // 4, n_heads // 2, n_heads - 1)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.5), layout="constrained")
    for ax, h in zip(axes, heads):
        im = ax.imshow(bias[h].numpy(), cmap="viridis")
        ax.set(title=f"head {h + 1}: slope {float(slopes[h]):.4g}", xlabel="key j", ylabel="query i")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"ALiBi bias m_h·(j − i), {n_heads} heads (future keys masked)")
    return _save(fig, path)


def t5_picture(path: Path, n: int = 160, num_buckets: int = 32, max_distance: int = 128) -> Path:
    """T5 bucket of every (query, key) pair, bidirectional (encoder) and causal (decoder) (Raffel et al. 2020)."""
    plt = _pyplot()
    relative = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # [q, kv]: key - query
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, bidirectional in zip(axes, (True, False)):
        buckets = t5_relative_bucket(relative, bidirectional, num_buckets, max_distance)
        im = ax.imshow(buckets.numpy(), cmap="tab20b" if bidirectional else "viridis")
        kind = "bidirectional (encoder)" if bidirectional else "causal (decoder)"
        ax.set(title=f"T5 buckets, {kind}", xlabel="key position", ylabel="query position")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{num_buckets} buckets, max_distance {max_distance}: exact near, log-spaced far")
    return _save(fig, path)


def position_pictures(out_dir: Path) -> list[Path]:
    """All position pictures into out_dir: sinusoidal, RoPE, ALiBi, T5 buckets."""
    out_dir = Path(out_dir)
    return [
        sinusoidal_picture(out_dir / "sinusoidal.png"),
        rope_picture(out_dir / "rope.png"),
        alibi_picture(out_dir / "alibi.png"),
        t5_picture(out_dir / "t5_buckets.png"),
    ]


def attention_picture(probs: torch.Tensor, tokens: list[str], path: Path, title: str) -> Path:
    """A grid of heat maps, one per head, of attention probabilities [heads, q, kv] with token labels."""
    plt = _pyplot()
    heads, n = probs.shape[0], len(tokens)
    cols = min(4, heads)
    rows = math.ceil(heads / cols)
    size = max(3.0, 0.28 * n + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(probs[h].float().numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"head {h}", fontsize=9)
        if n <= 40:
            ax.set_xticks(range(n), tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(n), tokens, fontsize=7)
    fig.suptitle(title)
    return _save(fig, Path(path))
