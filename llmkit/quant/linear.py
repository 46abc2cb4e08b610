"""Linear layers for inference with weights held in fewer bytes, a drop-in for nn.Linear (sheet section 11).

    precision   held as                                                              bytes / weight
    bf16        W rounded to bfloat16                                                2
    int8        GGML Q8_0: blocks of 32 inputs, d = absmax / 127, q = round(W / d)   34 / 32 = 1.0625
    int4        GGML Q4_1: blocks of 32 inputs, m = min, d = (max - min) / 15,       20 / 32 = 0.625
                q = round((W - m) / d) in 0..15
                (llama.cpp's formats; quant/ggml.py has their byte layouts and quantizers)

One class, :class:`PackedLinear`: y = x W^T + b read straight from the packed bytes by the C kernels
(``llmkit.kernels``: decoding reads each weight once, as its 0.6-2 bytes); without the kernels it
dequantizes for every call (exact, slow). Float32 and bfloat16 prefill (many rows) goes through
PyTorch's GEMM on float32 weights instead, which is compute-bound and faster there.

:func:`quantize_linears` swaps every projection inside the blocks and the LM head: bf16 holds the head
(and, tied, the embedding table it shares) in bfloat16; int8 and int4 hold it as Q8_0 (a 4-bit head
costs the most top-1 agreement: on SmolLM2 int4 blocks + an int4 head agreed 82% with float32), and a
tied embedding table looks its rows up from those same blocks (:class:`PackedEmbedding`).
A GGUF file's tensors that are already in the target format are used as stored (load.py): for SmolLM2's
Q4_1 file, ``int4`` holds exactly the file's weights.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from llmkit import kernels
from llmkit.quant import ggml

QuantKind = Literal["bf16", "int8", "int4"]
Format = Literal["f32", "bf16", "q8_0", "q4_1"]
# precision -> (format of the block projections, format of the LM head)
PRECISION_FORMATS: dict[str, tuple[Format, Format]] = {
    "bf16": ("bf16", "bf16"),
    "int8": ("q8_0", "q8_0"),
    "int4": ("q4_1", "q8_0"),
}
# the block formats and their GGML names ({"q8_0": "Q8_0", "q4_1": "Q4_1"})
GGML_NAMES: dict[str, str] = {fmt: name for name, fmt in kernels.GGML_FORMATS.items() if fmt.startswith("q")}


def pack(weight: torch.Tensor, fmt: Format) -> torch.Tensor:
    """W [N, K] as ``fmt``: float32, bfloat16, or uint8 rows of GGML blocks [N, K / 32 * block bytes]."""
    if fmt == "f32":
        return weight.detach().float().contiguous()
    if fmt == "bf16":
        return weight.detach().bfloat16().contiguous()
    return ggml.quantize(weight, GGML_NAMES[fmt])


def unpack(data: torch.Tensor, fmt: Format, in_features: int, ids: torch.Tensor | None = None) -> torch.Tensor:
    """The float32 weights [N, K] that ``data`` holds, or the rows ``ids`` [..., K] of them (GGML blocks
    dequantized exactly as gguf-py does: by the C kernel when built, by quant.ggml otherwise)."""
    if kernels.enabled() and data.is_contiguous():
        return kernels.dequantize_rows(data, fmt, in_features, ids)
    rows = data if ids is None else data[ids]
    if fmt in ("f32", "bf16"):
        return rows.float()
    return ggml.dequantize(rows.reshape(-1), GGML_NAMES[fmt], (*rows.shape[:-1], in_features))


class PackedLinear(nn.Module):
    """y = x W^T + b with W [out_features, in_features] held as ``fmt`` (f32 | bf16 | q8_0 | q4_1).

    ``data``: the packed weights as :func:`pack` makes them (or a GGUF tensor's raw rows of blocks).
    """

    KERNEL_MAX_ROWS = kernels.MATVEC_MAX_ROWS  # more rows (prefill) go to PyTorch's GEMM on dequantized weights

    def __init__(self, data: torch.Tensor, fmt: Format, in_features: int, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.fmt, self.in_features, self.out_features = fmt, in_features, data.shape[0]
        self.register_buffer("data", data)
        self.bias = None if bias is None else bias.detach().float()

    @classmethod
    def from_weight(cls, weight: torch.Tensor, fmt: Format, bias: torch.Tensor | None = None) -> PackedLinear:
        """Pack a float weight [N, K]."""
        return cls(pack(weight, fmt), fmt, weight.shape[1], bias)

    def dequantized(self) -> torch.Tensor:
        """The float32 weights [N, K] the layer multiplies by."""
        return unpack(self.data, self.fmt, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if x.dtype == torch.float32 and rows <= self.KERNEL_MAX_ROWS and kernels.enabled():
            y = kernels.matvec(self.data, self.fmt, x)  # [..., N]: reads each packed weight once
        else:  # many rows (prefill): compute-bound, PyTorch's GEMM on the float weights
            y = F.linear(x.float(), self.dequantized())
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt}"


class PackedEmbedding(nn.Module):
    """An embedding table looked up from packed rows (shared with a tied LM head): rows dequantized per lookup."""

    def __init__(self, head: PackedLinear) -> None:
        super().__init__()
        self.head = [head]  # not a submodule: the head owns the data

    @property
    def weight(self) -> torch.Tensor:
        """The whole table in float32 (for callers that read it; lookups never build it)."""
        return self.head[0].dequantized()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        head = self.head[0]
        return unpack(head.data, head.fmt, head.in_features, ids)  # [..., d_model]


def quantize_linears(model: nn.Module, kind: QuantKind, packed: dict | None = None) -> nn.Module:
    """Replace every nn.Linear inside ``model.blocks`` and the LM head in place; returns the model.

    ``packed``: state-dict name -> io.gguf.PackedTensor, weights already in GGML blocks (a GGUF file's):
    used as they are when their format is the target one, converted otherwise.
    """
    if kind not in PRECISION_FORMATS:
        raise ValueError(f"kind must be one of {', '.join(PRECISION_FORMATS)}; got {kind!r}")
    packed = packed or {}
    blocks_fmt, head_fmt = PRECISION_FORMATS[kind]
    # Names only: holding the modules would keep every float weight alive until the last one is converted.
    targets = [(prefix, name) for prefix, parent in model.blocks.named_modules(prefix="blocks")
               for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for prefix, name in targets:
        parent = model.get_submodule(prefix)
        child = getattr(parent, name)
        source = packed.get(f"{prefix}.{name}.weight", child.weight)
        setattr(parent, name, packed_linear(source, blocks_fmt, child.bias))
        del child, source  # this layer's float weight is freed here
    head_name = "embed.weight" if model.lm_head is None else "lm_head.weight"
    set_head(model, packed_linear(packed.get(head_name, head_weight(model)), head_fmt))
    return model


def packed_linear(source, fmt: Format, bias: torch.Tensor | None = None) -> PackedLinear:
    """A PackedLinear of ``fmt`` from a float weight or a PackedTensor (its blocks as they are if already ``fmt``)."""
    if isinstance(source, torch.Tensor):
        return PackedLinear.from_weight(source, fmt, bias)
    if GGML_NAMES.get(fmt) == source.ggml_type:
        return PackedLinear(source.data, fmt, source.in_features, bias)
    shape = (source.data.shape[0], source.in_features)
    weight = ggml.dequantize(source.data.reshape(-1), source.ggml_type, shape)
    return PackedLinear.from_weight(weight, fmt, bias)


def kept_ggml_types(precision: str) -> frozenset[str]:
    """The GGML types a GGUF loader should keep packed for ``precision`` (those its layers hold)."""
    return frozenset(GGML_NAMES[f] for f in PRECISION_FORMATS.get(precision, ()) if f in GGML_NAMES)


def head_weight(model: nn.Module) -> torch.Tensor:
    """The LM head's float weights [vocab, d_model] (the embedding table when tied)."""
    if model.lm_head is None:
        return model.embed.weight
    head = model.lm_head
    return head.dequantized() if isinstance(head, PackedLinear) else head.weight


def set_head(model: nn.Module, head: PackedLinear) -> None:
    """Install a packed LM head; a tied embedding then reads its rows from the head's data (one copy)."""
    tied = model.spec.tied_embeddings
    if tied and model.head_scale != 1.0:  # T5's rescaled tied head: keep the float table for the lookup
        tied = False
    model.lm_head = head
    if tied:
        model.embed = PackedEmbedding(head)
