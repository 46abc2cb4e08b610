"""GGML block formats: the byte layouts of GGUF tensors and their dequantization in torch.

A quantized GGML tensor is a flat run of *blocks*. A block holds ``block_size``
consecutive weights of one row in ``type_size`` bytes: one or two fp16 scales
and the packed integer codes. Bits per weight = ``8 * type_size / block_size``.

Every function below takes the blocks as a ``(n_blocks, type_size)`` uint8
tensor and returns ``(n_blocks, block_size)`` float32, vectorised over blocks.
Each one reproduces ``gguf.quants`` (llama.cpp's ``gguf-py/gguf/quants.py``)
bit for bit: same float32 operations, in the same order.

Sources: ggml ``ggml-common.h`` (block structs), ``ggml-quants.c``
(``dequantize_row_*``), gguf-py ``constants.py::GGML_QUANT_SIZES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from llmkit.calc.formats import GGML_TYPE_IDS, GGML_TYPES, QK_K, GGMLType
from llmkit.errors import LlmkitError

Blocks = torch.Tensor  # (n_blocks, type_size) uint8
DequantizeBlocks = Callable[[Blocks], torch.Tensor]


@dataclass(frozen=True)
class BlockFormat:
    """A dequantizable GGML type: its geometry and the function that decodes its blocks."""

    type: GGMLType
    dequantize_blocks: DequantizeBlocks

    @property
    def block_size(self) -> int:
        return self.type.block_size

    @property
    def type_size(self) -> int:
        return self.type.type_size


BLOCK_FORMATS: dict[str, BlockFormat] = {}


def block_format(name: str) -> Callable[[DequantizeBlocks], DequantizeBlocks]:
    """Register ``fn`` as the block decoder of GGML type ``name`` (geometry from GGML_TYPES)."""

    def register(fn: DequantizeBlocks) -> DequantizeBlocks:
        BLOCK_FORMATS[name] = BlockFormat(GGML_TYPES[name], fn)
        return fn

    return register


# -- byte helpers ---------------------------------------------------------------------------


def _f16(blocks: Blocks, start: int) -> torch.Tensor:
    """(n, 1) float32: the little-endian fp16 at bytes [start, start+2) of each block."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).to(torch.float32)


def _aligned(blocks: Blocks, size: int) -> Blocks:
    """Contiguous bytes whose start is a multiple of ``size`` (a copy when a tensor sits at an odd offset)."""
    blocks = blocks.contiguous()
    return blocks if blocks.storage_offset() % size == 0 else blocks.clone()


def _shifts(*bits: int) -> torch.Tensor:
    """A uint8 tensor of shift amounts, to unpack several fields of a byte at once."""
    return torch.tensor(bits, dtype=torch.uint8)


def _nibbles(qs: Blocks) -> torch.Tensor:
    """(n, 2*len) uint8: the low nibbles of ``qs`` (elements 0..len-1), then the high nibbles."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _bits(mask: Blocks) -> torch.Tensor:
    """(n, 8*len) uint8: bit j of the little-endian bit string ``mask`` (bit j%8 of byte j//8)."""
    n = mask.shape[0]
    return ((mask.unsqueeze(-1) >> _shifts(*range(8))) & 1).reshape(n, -1)  # (n, len, 8) -> (n, 8*len)


# -- float types ----------------------------------------------------------------------------


@block_format("F32")
def dequantize_f32(blocks: Blocks) -> torch.Tensor:
    """float32 as stored (4 bytes, little-endian IEEE 754)."""
    return _aligned(blocks, 4).view(torch.float32).clone()


@block_format("F16")
def dequantize_f16(blocks: Blocks) -> torch.Tensor:
    """float16 widened to float32 (exact)."""
    return _aligned(blocks, 2).view(torch.float16).to(torch.float32)


@block_format("BF16")
def dequantize_bf16(blocks: Blocks) -> torch.Tensor:
    """bfloat16 as the high half of a float32: bits << 16 (ggml ``ggml_bf16_to_fp32``).

    ::

        bf16 bytes  [b0 b1]          ->  float32 bytes [00 00 b0 b1]
    """
    zeros = torch.zeros_like(blocks)
    return torch.cat([zeros, blocks], dim=-1).view(torch.float32)  # (n, 4) bytes -> (n, 1)


# -- 32-weight blocks -----------------------------------------------------------------------


@block_format("Q4_0")
def dequantize_q4_0(blocks: Blocks) -> torch.Tensor:
    """y = d * (q - 8), q in 0..15 (ggml ``dequantize_row_q4_0``).

    ::

        byte  0      2                    18
              | d f16 | qs[16]             |
        qs[j] = (q[j+16] << 4) | q[j]      j = 0..15: low nibbles hold weights 0..15, high nibbles 16..31
    """
    d = _f16(blocks, 0)  # (n, 1)
    q = _nibbles(blocks[:, 2:]).to(torch.int8) - 8  # (n, 32)
    return d * q.to(torch.float32)


@block_format("Q4_1")
def dequantize_q4_1(blocks: Blocks) -> torch.Tensor:
    """y = d * q + m, q in 0..15 (ggml ``dequantize_row_q4_1``).

    ::

        byte  0      2      4                    20
              | d f16 | m f16 | qs[16]             |
        qs[j] = (q[j+16] << 4) | q[j]      same nibble order as Q4_0
    """
    d, m = _f16(blocks, 0), _f16(blocks, 2)  # (n, 1) each
    q = _nibbles(blocks[:, 4:]).to(torch.float32)  # (n, 32)
    return d * q + m


@block_format("Q5_0")
def dequantize_q5_0(blocks: Blocks) -> torch.Tensor:
    """y = d * (q - 16), q = low nibble | 5th bit << 4, in 0..31 (ggml ``dequantize_row_q5_0``).

    ::

        byte  0      2           6                    22
              | d f16 | qh u32 LE | qs[16]             |
        bit j of qh is bit 4 of weight j; qs nibbles as in Q4_0
    """
    d = _f16(blocks, 0)  # (n, 1)
    high = _bits(blocks[:, 2:6])  # (n, 32)
    q = (_nibbles(blocks[:, 6:]) | (high << 4)).to(torch.int8) - 16  # (n, 32)
    return d * q.to(torch.float32)


@block_format("Q5_1")
def dequantize_q5_1(blocks: Blocks) -> torch.Tensor:
    """y = d * q + m, q = low nibble | 5th bit << 4, in 0..31 (ggml ``dequantize_row_q5_1``).

    ::

        byte  0      2      4           8                    24
              | d f16 | m f16 | qh u32 LE | qs[16]             |
    """
    d, m = _f16(blocks, 0), _f16(blocks, 2)  # (n, 1) each
    high = _bits(blocks[:, 4:8])  # (n, 32)
    q = (_nibbles(blocks[:, 8:]) | (high << 4)).to(torch.float32)  # (n, 32)
    return d * q + m


@block_format("Q8_0")
def dequantize_q8_0(blocks: Blocks) -> torch.Tensor:
    """y = q * d, q int8 (ggml ``dequantize_row_q8_0``).

    ::

        byte  0      2                                  34
              | d f16 | qs[32] int8                       |
    """
    d = _f16(blocks, 0)  # (n, 1)
    q = blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32)  # (n, 32)
    return q * d


# -- K-quants: 256-weight super-blocks of 16 or 8 sub-blocks ----------------------------------


@block_format("Q2_K")
def dequantize_q2_k(blocks: Blocks) -> torch.Tensor:
    """y = (d * sc) * q - dmin * m per 16-weight sub-block, q in 0..3 (ggml ``dequantize_row_q2_K``).

    ::

        byte  0                16                  80     82       84
              | scales[16]       | qs[64]            | d f16 | dmin f16 |
        scales[s] = m << 4 | sc          (4-bit scale and 4-bit min of sub-block s)
        qs: 2 halves of 32 bytes; in half h, bits 2k..2k+1 of byte i hold weight 128h + 32k + i
    """
    n = blocks.shape[0]
    scales, qs = blocks[:, :16], blocks[:, 16:80]
    d, dmin = _f16(blocks, 80), _f16(blocks, 82)  # (n, 1) each
    dl = (d * (scales & 0x0F).to(torch.float32)).reshape(n, 16, 1)
    ml = (dmin * (scales >> 4).to(torch.float32)).reshape(n, 16, 1)
    q = (qs.reshape(n, 2, 1, 32) >> _shifts(0, 2, 4, 6).reshape(1, 1, 4, 1)) & 3  # (n, 2, 4, 32)
    q = q.reshape(n, 16, 16).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


@block_format("Q3_K")
def dequantize_q3_k(blocks: Blocks) -> torch.Tensor:
    """y = (d * (sc - 32)) * (q - 4 * (1 - hbit)) per 16-weight sub-block (ggml ``dequantize_row_q3_K``).

    ::

        byte  0           32               96            108     110
              | hmask[32]   | qs[64]         | scales[12]  | d f16 |
        q low 2 bits: qs as in Q2_K.  hbit: bit k of hmask[i] for weight 32k + i;
        a set hbit means no offset (q - 0), a clear one q - 4.
        6-bit scales of the 16 sub-blocks A..P, packed:
          0: IIIIAAAA   1: JJJJBBBB  ...  7: PPPPHHHH     (low 4 bits)
          8: MMIIEEAA   9: NNJJFFBB  10: OOKKGGCC  11: PPLLHHDD   (high 2 bits)
    """
    n = blocks.shape[0]
    hmask, qs, scales = blocks[:, :32], blocks[:, 32:96], blocks[:, 96:108]
    d = _f16(blocks, 108)  # (n, 1)
    low = (scales[:, :8].reshape(n, 1, 8) >> _shifts(0, 4).reshape(1, 2, 1)).reshape(n, 16)
    high = (scales[:, 8:].reshape(n, 1, 4) >> _shifts(0, 2, 4, 6).reshape(1, 4, 1)).reshape(n, 16)
    sc = ((low & 0x0F) | ((high & 3) << 4)).to(torch.int8) - 32  # (n, 16)
    dl = (d * sc.to(torch.float32)).reshape(n, 16, 1)
    ql = (qs.reshape(n, 2, 1, 32) >> _shifts(0, 2, 4, 6).reshape(1, 1, 4, 1)).reshape(n, 16, 16) & 3
    qh = (hmask.reshape(n, 1, 1, 32) >> _shifts(*range(8)).reshape(1, 1, 8, 1)).reshape(n, 16, 16) & 1
    q = ql.to(torch.int8) - ((qh ^ 1) << 2).to(torch.int8)  # (n, 16, 16)
    return (dl * q.to(torch.float32)).reshape(n, QK_K)


def _scale_min_k4(scales: Blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """(sc, m), each (n, 8) uint8: the 6-bit scales and mins of Q4_K/Q5_K (ggml ``get_scale_min_k4``).

    ::

        0: EEAAAAAA  1: FFBBBBBB  2: GGCCCCCC  3: HHDDDDDD    sc A..D low 6 bits, E..H top 2 bits
        4: eeaaaaaa  5: ffbbbbbb  6: ggcccccc  7: hhdddddd    m  a..d low 6 bits, e..h top 2 bits
        8: eeeeEEEE  9: ffffFFFF 10: ggggGGGG 11: hhhhHHHH    low 4 bits of sc E..H and m e..h
    """
    n = scales.shape[0]
    s = scales.reshape(n, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]  # (n, 4) each
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


@block_format("Q4_K")
def dequantize_q4_k(blocks: Blocks) -> torch.Tensor:
    """y = (d * sc) * q - dmin * m per 32-weight sub-block, q in 0..15 (ggml ``dequantize_row_q4_K``).

    ::

        byte  0      2         4            16                 144
              | d f16 | dmin f16 | scales[12] | qs[128]           |
        scales: 8 x (6-bit sc, 6-bit m), see _scale_min_k4
        qs: 4 chunks of 32 bytes; chunk c: low nibbles = sub-block 2c, high nibbles = sub-block 2c+1
    """
    n = blocks.shape[0]
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)  # (n, 1) each
    sc, mn = _scale_min_k4(blocks[:, 4:16])
    dl = (d * sc.to(torch.float32)).reshape(n, 8, 1)
    ml = (dmin * mn.to(torch.float32)).reshape(n, 8, 1)
    q = (blocks[:, 16:].reshape(n, 4, 1, 32) >> _shifts(0, 4).reshape(1, 1, 2, 1)) & 0x0F  # (n, 4, 2, 32)
    q = q.reshape(n, 8, 32).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


@block_format("Q5_K")
def dequantize_q5_k(blocks: Blocks) -> torch.Tensor:
    """y = (d * sc) * q - dmin * m per 32-weight sub-block, q in 0..31 (ggml ``dequantize_row_q5_K``).

    ::

        byte  0      2         4            16        48                 176
              | d f16 | dmin f16 | scales[12] | qh[32]  | qs[128]           |
        low 4 bits as Q4_K; bit s of qh[i] is bit 4 of weight i of sub-block s
    """
    n = blocks.shape[0]
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)  # (n, 1) each
    sc, mn = _scale_min_k4(blocks[:, 4:16])
    dl = (d * sc.to(torch.float32)).reshape(n, 8, 1)
    ml = (dmin * mn.to(torch.float32)).reshape(n, 8, 1)
    ql = (blocks[:, 48:].reshape(n, 4, 1, 32) >> _shifts(0, 4).reshape(1, 1, 2, 1)) & 0x0F  # (n, 4, 2, 32)
    qh = (blocks[:, 16:48].reshape(n, 1, 1, 32) >> _shifts(*range(8)).reshape(1, 1, 8, 1)) & 1  # (n, 1, 8, 32)
    q = (ql.reshape(n, 8, 32) | (qh.reshape(n, 8, 32) << 4)).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


@block_format("Q6_K")
def dequantize_q6_k(blocks: Blocks) -> torch.Tensor:
    """y = (d * scale) * (q - 32) per 16-weight sub-block, q in 0..63 (ggml ``dequantize_row_q6_K``).

    ::

        byte  0             128           192                208     210
              | ql[128]       | qh[64]      | scales[16] int8  | d f16 |
        q = ql nibble | qh 2 bits << 4
        ql: 2 halves of 64 bytes; in half h, low nibbles = weights 128h + 0..63, high = 128h + 64..127
        qh: 2 halves of 32 bytes; in half h, bits 2k..2k+1 of byte i belong to weight 128h + 32k + i
    """
    n = blocks.shape[0]
    ql, qh = blocks[:, :128], blocks[:, 128:192]
    scales = blocks[:, 192:208].contiguous().view(torch.int8).to(torch.float32)  # (n, 16)
    d = _f16(blocks, 208)  # (n, 1)
    dl = (d * scales).reshape(n, 16, 1)
    low = ((ql.reshape(n, 2, 1, 64) >> _shifts(0, 4).reshape(1, 1, 2, 1)) & 0x0F).reshape(n, 8, 32)
    high = ((qh.reshape(n, 2, 1, 32) >> _shifts(0, 2, 4, 6).reshape(1, 1, 4, 1)) & 3).reshape(n, 8, 32)
    q = (low | (high << 4)).to(torch.int8) - 32  # (n, 8, 32)
    return (dl * q.reshape(n, 16, 16).to(torch.float32)).reshape(n, QK_K)


# -- the entry point --------------------------------------------------------------------------


def ggml_type(kind: str | int) -> GGMLType:
    """The GGMLType named ``kind`` (``"Q4_1"``) or with id ``kind`` (3)."""
    found = GGML_TYPE_IDS.get(kind) if isinstance(kind, int) else GGML_TYPES.get(str(kind).upper())
    if found is None:
        raise LlmkitError(f"unknown GGML tensor type {kind!r} (known: {', '.join(GGML_TYPES)})")
    return found


def dequantize(data: torch.Tensor, kind: str | int, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 tensor of ``shape`` (PyTorch order, rows last-contiguous) from the raw bytes of a GGML tensor."""
    t = ggml_type(kind)
    fmt = BLOCK_FORMATS.get(t.name)
    if fmt is None:
        raise LlmkitError(
            f"dequantizing GGML type {t.name} is not supported (supported: {', '.join(BLOCK_FORMATS)})"
        )
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if shape and shape[-1] % t.block_size:
        raise LlmkitError(f"a {t.name} row of {shape[-1]} weights is not a whole number of {t.block_size}-blocks")
    expected = n_elements // t.block_size * t.type_size
    if data.numel() != expected:
        raise LlmkitError(f"{t.name} tensor of shape {tuple(shape)} needs {expected} bytes, got {data.numel()}")
    blocks = data.reshape(-1, t.type_size)  # (n_blocks, type_size) uint8
    return fmt.dequantize_blocks(blocks).reshape(shape)


SUPPORTED_TYPES: tuple[str, ...] = tuple(BLOCK_FORMATS)


# -- quantization: float rows -> GGML blocks (the formats the CPU kernels multiply by) ----------------


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (C's roundf; gguf-py's ``np_roundf``), in float32."""
    a = x.abs()
    floored = torch.floor(a)
    return torch.sign(x) * (floored + torch.floor(2 * (a - floored)))


def _f16_bytes(x: torch.Tensor) -> torch.Tensor:
    """(n, 2) uint8: each value of x (n, 1) as a little-endian fp16."""
    return x.to(torch.float16).view(torch.uint8)


def _reciprocal(d: torch.Tensor) -> torch.Tensor:
    """1 / d, and 0 where d is 0 (an all-zero block)."""
    return torch.where(d == 0, torch.zeros_like(d), 1 / torch.where(d == 0, torch.ones_like(d), d))


def quantize_q8_0(values: torch.Tensor) -> Blocks:
    """Q8_0 blocks of (n, 32) float32 values: d = absmax / 127, q = roundf(x / d) (ggml ``quantize_row_q8_0_ref``)."""
    d = values.abs().amax(dim=1, keepdim=True) / 127  # (n, 1)
    q = _round_half_away(values * _reciprocal(d)).to(torch.int8)  # (n, 32) in -127..127
    return torch.cat([_f16_bytes(d), q.view(torch.uint8)], dim=1)  # (n, 34)


def quantize_q4_1(values: torch.Tensor) -> Blocks:
    """Q4_1 blocks of (n, 32) float32 values: m = min, d = (max - min) / 15, q = trunc((x - m) / d + 0.5)
    clipped to 0..15 (ggml ``quantize_row_q4_1_ref``)."""
    low, high = values.amin(dim=1, keepdim=True), values.amax(dim=1, keepdim=True)  # (n, 1) each
    d = (high - low) / 15
    q = torch.trunc((values - low) * _reciprocal(d) + 0.5).clamp(0, 15).to(torch.uint8)  # (n, 32)
    packed = q[:, :16] | (q[:, 16:] << 4)  # weight j in the low nibble of byte j, weight j+16 in the high one
    return torch.cat([_f16_bytes(d), _f16_bytes(low), packed], dim=1)  # (n, 20)


QUANTIZERS: dict[str, Callable[[torch.Tensor], Blocks]] = {"Q8_0": quantize_q8_0, "Q4_1": quantize_q4_1}


def quantize(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """GGML blocks of a float tensor [..., K], one row of K / 32 blocks per row: uint8 [..., K / 32 * type_size]."""
    t = ggml_type(kind)
    if t.name not in QUANTIZERS:
        raise LlmkitError(f"quantizing to GGML type {t.name} is not supported (supported: {', '.join(QUANTIZERS)})")
    if weight.shape[-1] % t.block_size:
        raise LlmkitError(f"a {t.name} row needs a multiple of {t.block_size} weights; this one has {weight.shape[-1]}")
    blocks = QUANTIZERS[t.name](weight.detach().float().reshape(-1, t.block_size))  # (n_blocks, type_size)
    return blocks.reshape(*weight.shape[:-1], weight.shape[-1] // t.block_size * t.type_size)
