"""The linear map y = x W^T + b, with decoding's few-row products on the C GEMV kernel.

A decoding step multiplies one row by every weight matrix: it is bound by reading the weights, and
PyTorch's float32 GEMV reaches about half the machine's memory bandwidth there. :func:`linear` sends
float32 products of at most KERNEL_MAX_ROWS rows that need no gradient to ``llmkit.kernels.matvec``
(the same sums in another order: equal within float32 rounding), everything else to ``F.linear``.
:class:`Linear` is nn.Linear with that forward: same parameters, same state dict, training unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmkit import kernels

KERNEL_MAX_ROWS = kernels.MATVEC_MAX_ROWS


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., K] W^T [K, N] + b -> [..., N]; the C kernel for few float32 rows without autograd."""
    if (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() <= KERNEL_MAX_ROWS * x.shape[-1]
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and weight.is_contiguous()
        and x.device.type == "cpu"
        and kernels.enabled()
    ):
        y = kernels.matvec(weight, "f32", x)
        return y if bias is None else y.add_(bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
