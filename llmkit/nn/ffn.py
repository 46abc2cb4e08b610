"""Position-wise feed-forward networks (sheet sections 1 and 6).

    MLP:     FFN(x) = down(act(up(x)))                       (Vaswani et al. 2017; GELU in BERT/GPT-2)
    SwiGLU:  FFN(x) = down(silu(gate(x)) * up(x))            (Shazeer 2020, "GLU Variants"; LLaMA)
    GeGLU:   FFN(x) = down(gelu(gate(x)) * up(x))            (Shazeer 2020; FLAN-T5)

The gated forms use three matrices, so LLaMA shrinks d_ff to ~8/3 d_model to keep
the parameter count of a 4 d_model MLP.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.spec import ModelSpec

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """down(act(up(x))): d_model -> d_ff -> d_model."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.act = ACTIVATIONS[spec.activation]
        self.up = nn.Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.down = nn.Linear(spec.d_ff, spec.d_model, bias=spec.ffn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class GLU(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with silu, GeGLU with gelu (Shazeer 2020)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.act = ACTIVATIONS[spec.activation]
        self.gate = nn.Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.up = nn.Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.down = nn.Linear(spec.d_ff, spec.d_model, bias=spec.ffn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))  # [batch, seq, d_model]


def build_ffn(spec: ModelSpec) -> nn.Module:
    """The FFN the spec names: a plain MLP, or a GLU (swiglu / geglu). MoE comes with issue 4."""
    return MLP(spec) if spec.ffn_kind == "mlp" else GLU(spec)
