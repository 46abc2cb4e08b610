"""The one model class: ``Transformer(spec)``, a decoder built entirely from a ModelSpec.

    input_ids [batch, seq]
      -> embed                                  [batch, seq, d_model]
      -> n_layers x Block (pre-norm: attention with RoPE + GQA, then FFN)
      -> norm -> lm_head (tied: embed.weight)   [batch, seq, vocab]

Parameter names (io/ produces exactly these): ``embed.weight``,
``blocks.{i}.attn_norm.weight``, ``blocks.{i}.attn.{q,k,v,o}.weight`` (+ ``.bias``),
``blocks.{i}.ffn_norm.weight``, ``blocks.{i}.ffn.{gate,up,down}.weight``,
``norm.weight``, ``lm_head.weight`` (absent when tied).

Families differ by ModelSpec fields, never by copied classes (litgpt's rule);
issue 4 widens what :func:`check_supported` lets through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.nn.attention import build_mask
from llmkit.nn.block import Block
from llmkit.nn.norm import build_norm
from llmkit.nn.position import rope_cos_sin, rope_inv_freq
from llmkit.spec import ModelSpec, SpecError


def check_supported(spec: ModelSpec) -> None:
    """Raise SpecError naming the first feature of ``spec`` this model cannot build yet."""
    unsupported = {
        "family": (spec.family, ("decoder",)),
        "position": (spec.position, ("rope",)),
        "norm_placement": (spec.norm_placement, ("pre",)),
    }
    for name, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise SpecError(f"model {spec.name!r}: {name}={value!r} is not supported yet (supported: {allowed})")
    if spec.is_moe:
        raise SpecError(f"model {spec.name!r}: mixture-of-experts FFNs are not supported yet")


def default_positions(padding: torch.Tensor | None, past: int, q_len: int) -> torch.Tensor:
    """Positions [batch|1, q_len]: past + 0..q_len-1, or counted over real tokens when padded (as HF generate)."""
    if padding is None:
        return torch.arange(past, past + q_len)[None]  # [1, seq]
    counted = padding.long().cumsum(-1) - 1  # [batch, past + seq]
    return counted[:, past : past + q_len].clamp(min=0)


class Transformer(nn.Module):
    """A decoder-only transformer configured by a ModelSpec: ``forward(ids) -> logits``."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        check_supported(spec)
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.d_model)
        self.blocks = nn.ModuleList(Block(spec, i) for i in range(spec.n_layers))
        self.norm = build_norm(spec)
        self.lm_head = None if spec.tied_embeddings else nn.Linear(spec.d_model, spec.vocab_size, bias=False)
        self.init_buffers()

    def init_buffers(self) -> None:
        """(Re)compute the RoPE frequencies, which are derived from the spec, not stored in checkpoints."""
        inv_freq, self.rope_scale = rope_inv_freq(self.spec)
        self.register_buffer("inv_freq", inv_freq.to(self.embed.weight.device), persistent=False)

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype of the residual stream: that of the final norm's weights (float32 unless cast)."""
        return self.norm.weight.dtype

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits = x W_head^T, W_head = embed.weight when tied: [batch, seq, vocab]."""
        if self.lm_head is None:
            return F.linear(x, self.embed.weight)
        return self.lm_head(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache=None,
        positions: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits [batch, seq, vocab] (seq 1 when ``last_only``) for input_ids [batch, seq].

        attention_mask: [batch, past + seq], 1 for real tokens, 0 for padding (covers cached tokens too);
        cache: a KV cache, filled with this call's keys/values; positions: [batch|1, seq] RoPE positions.
        """
        b, t = input_ids.shape
        past = cache.length if cache is not None else 0
        if positions is None:
            positions = default_positions(attention_mask, past, t).to(input_ids.device)
        x = self.embed(input_ids).to(self.activation_dtype)  # [batch, seq, d_model]
        if self.spec.embedding_scale != 1.0:
            x = x * self.spec.embedding_scale
        rope = rope_cos_sin(self.inv_freq, positions, self.rope_scale, x.dtype)  # 2 x [batch|1, 1, seq, d_rot]
        mask = build_mask(attention_mask, t, past, x.dtype, self.spec.sliding_window)
        for block in self.blocks:
            x = block(x, rope, mask, cache)
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]  # [batch, 1, d_model]
        return self.head(self.norm(x))  # [batch, seq, vocab]
