"""The transformer block (sheet section 6), pre-norm or post-norm as the spec says:

    pre-norm  (GPT-2, LLaMA, T5):        x = x + Attn(Norm(x))          post-norm (Transformer, BERT, BART):
                                         x = x + Cross(Norm(x), memory)   x = Norm(x + Attn(x))
                                         x = x + FFN(Norm(x))             x = Norm(x + Cross(x, memory))
                                                                          x = Norm(x + FFN(x))

Pre-norm keeps the residual stream un-normalised, which trains stably without warm-up
(Xiong et al. 2020); post-norm normalises after each residual add. The cross-attention
sub-layer (queries from the decoder, keys/values from the encoder's output, ``memory``)
exists only in an encoder-decoder's decoder blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from llmkit.nn.attention import Attention, Mask
from llmkit.nn.ffn import build_ffn
from llmkit.nn.norm import build_norm
from llmkit.spec import ModelSpec


class Block(nn.Module):
    """attn_norm + attn, [cross_norm + cross,] ffn_norm + ffn; norms before (pre) or after (post) each residual add."""

    def __init__(self, spec: ModelSpec, layer: int, cross: bool = False) -> None:
        super().__init__()
        self.post = spec.norm_placement == "post"
        self.attn_norm = build_norm(spec)
        self.attn = Attention(spec, layer)
        self.cross_norm = build_norm(spec) if cross else None
        self.cross = Attention(spec, layer, cross=True) if cross else None
        self.ffn_norm = build_norm(spec)
        self.ffn = build_ffn(spec)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: Mask,
        cache=None,
        position_bias: torch.Tensor | None = None,
        memory=None,
    ) -> torch.Tensor:
        """x [batch, seq, d_model] -> [batch, seq, d_model]; memory: the encoder's output (model.EncoderOutput)."""
        if self.post:  # norm after each residual add
            x = self.attn_norm(x + self.attn(x, rope, mask, cache, position_bias=position_bias))
            if self.cross is not None:
                x = self.cross_norm(x + self.cross(x, None, memory.mask, memory.cache, kv_source=memory.hidden))
            return self.ffn_norm(x + self.ffn(x))
        x = x + self.attn(self.attn_norm(x), rope, mask, cache, position_bias=position_bias)  # [batch, seq, d_model]
        if self.cross is not None:
            x = x + self.cross(self.cross_norm(x), None, memory.mask, memory.cache, kv_source=memory.hidden)
        return x + self.ffn(self.ffn_norm(x))
