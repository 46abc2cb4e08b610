"""Quantized linear layers for inference: weights held as int8 or int4, a drop-in for nn.Linear.

    int8 (symmetric, one scale per output row):
        s_n = max_k |W[n, k]| / 127        q[n, k] = round(W[n, k] / s_n)  in [-127, 127]
        W ~= q * s                         (LLM.int8's absmax row-wise scheme, Dettmers et al. 2022)
    int4 (asymmetric, one scale and minimum per group of 32 inputs):
        s_g = (max_g - min_g) / 15         q = round((W - min_g) / s_g)  in [0, 15]
        W ~= q * s_g + min_g               (GPTQ/AWQ-style groups; gpt-fast's int4 layout)

Each layer has a readable path (dequantize, then F.linear) and a fast path through
PyTorch's CPU kernels, with a test that they agree:

    int8: ``aten::_weight_int8pack_mm``      (bfloat16 activations: its AVX2 path; float32 is ~10x slower)
    int4: ``aten::_weight_int4pack_mm_for_cpu`` (bfloat16 activations, nibble-packed weights)

:func:`quantize_linears` swaps every projection inside the blocks; the LM head stays in
float (quantizing it costs the most top-1 agreement: on SmolLM2 int4 blocks agree 98.8%
with float32, int4 blocks + int4 head 82%). fbgemm's dynamic int8 linear
(``quantized::linear_dynamic``) is faster still but quantizes activations per tensor,
which LLM activation outliers break (45% top-1 agreement): not used.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

INT4_GROUP = 32


def int8_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 [N, K], scale float32 [N]): symmetric absmax per output row, q = round(W / s)."""
    scale = w.float().abs().amax(dim=1).clamp(min=1e-12) / 127  # [N]
    q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def int8_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """W ~= q * s, float32 [N, K]."""
    return q.float() * scale[:, None]


def int4_quantize(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q in 0..15 as int32 [N, K], scale [N, K/group], minimum [N, K/group]): asymmetric per group of inputs."""
    n, k = w.shape
    g = w.float().reshape(n, k // group, group)  # [N, groups, group]
    low, high = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    q = torch.round((g - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
    return q.reshape(n, k), scale, low


def int4_dequantize(q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """W ~= q * s_g + min_g, float32 [N, K]."""
    n, k = q.shape
    g = q.reshape(n, scale.shape[1], -1).float() * scale[..., None] + low[..., None]
    return g.reshape(n, k)


class Int8Linear(nn.Module):
    """y = x W^T + b with W held as int8 rows, one scale per row (weight-only: activations stay float)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        q, scale = int8_quantize(weight)
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("scale_bf16", scale.bfloat16())
        self.bias = None if bias is None else bias.detach().float()
        self.fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return F.linear(x, int8_dequantize(self.q, self.scale).to(x.dtype), self.bias)
        rows = x.reshape(-1, self.in_features).bfloat16()  # [tokens, K]: the kernel's fast path is bf16
        y = torch.ops.aten._weight_int8pack_mm(rows, self.q, self.scale_bf16).float()  # [tokens, N]
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class Int4Linear(nn.Module):
    """y = x W^T + b with W held as 4-bit groups (two per byte, PyTorch's CPU int4 pack)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group: int = INT4_GROUP) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.group = group
        q, scale, low = int4_quantize(weight, group)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
        self.register_buffer("scales_zeros", torch.stack([scale, zero], dim=-1).transpose(0, 1).bfloat16().contiguous())
        self.bias = None if bias is None else bias.detach().float()
        self.fast = True

    def dequantized(self) -> torch.Tensor:
        """The float32 weights the kernel multiplies by: (q - 8) * scale + zero, from the stored pack."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        w_t = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, self.group, self.scales_zeros)
        return w_t.float().T  # [N, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return F.linear(x, self.dequantized().to(x.dtype), self.bias)
        rows = x.reshape(-1, self.in_features).bfloat16()  # [tokens, K]
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group, self.scales_zeros).float()
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class Bf16Linear(nn.Module):
    """y = x W^T + b with W held in bfloat16 and float32 activations around the matmul.

    Few rows (decoding): a bfloat16 GEMV, reading half the bytes of float32.
    Many rows (prefill): compute-bound, and this CPU has no native bfloat16 FMA, so the
    weights are widened to float32 for one GEMM (the float copy lives only for that call).
    """

    PREFILL_ROWS = 16

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.detach().bfloat16())
        self.bias = None if bias is None else bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # [tokens, K]
        if rows.shape[0] > self.PREFILL_ROWS:
            y = F.linear(rows.float(), self.weight.float(), self.bias)
        else:
            y = F.linear(rows.bfloat16(), self.weight).float()
            y = y if self.bias is None else y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


QuantKind = Literal["bf16", "int8", "int4"]
QUANTIZED_LINEARS: dict[str, type[nn.Module]] = {"bf16": Bf16Linear, "int8": Int8Linear, "int4": Int4Linear}


def quantize_linears(model: nn.Module, kind: QuantKind) -> nn.Module:
    """Replace every nn.Linear inside ``model.blocks`` in place; returns the model.

    int8 / int4 keep the LM head in float32. bf16 also holds the head (and, tied, the
    embedding table it shares) in bfloat16: activations stay float32 throughout.
    """
    layer = QUANTIZED_LINEARS[kind]
    for parent in list(model.blocks.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, layer(child.weight.detach(), child.bias))
    if kind == "bf16":
        tied = model.lm_head is None
        head = model.embed.weight if tied else model.lm_head.weight
        model.lm_head = Bf16Linear(head, None)
        if tied:  # one bfloat16 table for the lookup and the head
            model.embed.weight = nn.Parameter(model.lm_head.weight, requires_grad=False)
    return model
