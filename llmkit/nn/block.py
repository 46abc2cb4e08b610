"""The transformer block (sheet section 6), pre-norm as in GPT-2 and LLaMA:

    x = x + Attention(Norm(x))
    x = x + FFN(Norm(x))

Pre-norm keeps the residual stream un-normalised, which trains stably without warm-up
(Xiong et al. 2020). Post-norm (the original Transformer, BERT) arrives with issue 4.
"""

from __future__ import annotations

import torch
from torch import nn

from llmkit.nn.attention import Attention, Mask
from llmkit.nn.ffn import build_ffn
from llmkit.nn.norm import build_norm
from llmkit.spec import ModelSpec


class Block(nn.Module):
    """One pre-norm decoder block: attn_norm -> attn -> + , ffn_norm -> ffn -> + ."""

    def __init__(self, spec: ModelSpec, layer: int) -> None:
        super().__init__()
        self.attn_norm = build_norm(spec)
        self.attn = Attention(spec, layer)
        self.ffn_norm = build_norm(spec)
        self.ffn = build_ffn(spec)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: Mask, cache=None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)  # [batch, seq, d_model]
        return x + self.ffn(self.ffn_norm(x))
