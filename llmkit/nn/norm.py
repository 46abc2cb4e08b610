"""Normalisation layers (sheet section 6): LayerNorm and RMSNorm.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b      (Ba et al. 2016)
    RMSNorm(x)   =  x / sqrt(mean(x^2) + eps) * g                   (Zhang & Sennrich 2019)

RMSNorm drops the centring and the bias: one reduction instead of two.
"""

from __future__ import annotations

import torch
from torch import nn

from llmkit import kernels
from llmkit.spec import ModelSpec


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * g, computed in float32 (Zhang & Sennrich 2019; as LLaMA does).

    Float32 inputs that need no gradient take the C kernel (one pass instead of six ops; llmkit.kernels).
    """
    if (x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu" and kernels.enabled()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return kernels.rms_norm(x, weight, eps)
    x32 = x.float()  # [..., d]
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain g (no bias, no centring)."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose bias is optional (``bias=False`` as nanoGPT allows)."""

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__(d, eps=eps, bias=bias)


def build_norm(spec: ModelSpec) -> nn.Module:
    """The norm the spec names: RMSNorm or LayerNorm of width d_model."""
    if spec.norm == "rmsnorm":
        return RMSNorm(spec.d_model, spec.norm_eps)
    return LayerNorm(spec.d_model, spec.norm_eps, bias=spec.norm_bias)
