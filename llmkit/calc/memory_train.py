"""Training memory: model states (weights, gradients, optimizer, master weights) and activations (sheet section 3).

Model states per parameter, mixed-precision Adam::

    ZeRO paper (Rajbhandari et al. 2019, sec. 3.1)   2 (16-bit weights) + 2 (16-bit grads) + 12 (fp32 master, m, v) = 16 B
    fp32 gradients (HF "Anatomy", llm-analysis)      2 + 4 + 12                                                       = 18 B
    DeepSpeed estimator (PR #5099, 2P + 18P/N)       2 + (2 + 4) + 12                                                 = 20 B

The ``convention`` setting picks one and the result says which. ZeRO stages over N
data-parallel devices (ZeRO paper Fig. 1): stage 1 shards the optimizer states
(with the master weights), stage 2 also the gradients, stage 3 also the weights.

Activations per layer (Korthikanti et al. 2022, arXiv:2205.05198, Table 2), bytes,
for 16-bit activations and 1-byte dropout masks::

    GELU-MLP block (d_ff = 4h, dropout):  s·b·h·(34 + 5·a·s/h)
        attention 11·sbh + 5·a·s²·b    MLP 19·sbh    2 LayerNorms 4·sbh

The same bookkeeping for any block (``e`` = activation bytes, d_q = a·d_head,
d_kv = n_kv·d_head, f = d_ff) -- this is the SwiGLU / RMSNorm variant, derived here::

    attention  s·b·(e·h + e·d_q + 2·e·d_kv + e·d_q)      QKV input, Q, K, V, out-proj input
               + e·a·s²·b                                  softmax output
               + dropout: s·b·h + a·s²·b + e·a·s²·b        output mask, softmax mask, dropped scores
    MLP        s·b·(e·h + 2·e·f)                           (GELU: input, pre-activation, activation)
    gated MLP  s·b·(e·h + 4·e·f)                           (SwiGLU: input, gate, SiLU(gate), up, product)
               + dropout: s·b·h
    norms      2·e·s·b·h

LLaMA-2-7B (h=4096, f=11008, no dropout): s·b·h·(37.5 + 2·a·s/h). FlashAttention keeps no
s² terms: it stores the output (already counted) and an fp32 log-sum-exp, 4·a·s·b.
Selective recomputation drops the s² terms (34·sbh for the GELU block); full
recomputation keeps each layer's input (e·s·b·h) plus one layer's working set.

This is the bookkeeping of fused kernels. Eager transformers code keeps more: its
LlamaRMSNorm upcasts to fp32, so autograd holds the fp32 input, the fp32 rstd and the
16-bit normalized output (about 6 B per element where 2 B are counted here).

Pure Python: no torch import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from llmkit.calc.memory import MemoryEstimate, ceil_div, require_choice, require_positive
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor

Precision = Literal["fp32", "mixed-fp16", "mixed-bf16", "bf16"]
Optimizer = Literal["sgd", "sgd-momentum", "adam", "adamw", "adam-8bit", "adafactor"]
Convention = Literal["zero-16", "fp32-grads-18", "deepspeed-20"]
Recompute = Literal["none", "selective", "full"]

PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
OPTIMIZERS: tuple[str, ...] = Optimizer.__args__  # type: ignore[attr-defined]
CONVENTIONS: tuple[str, ...] = Convention.__args__  # type: ignore[attr-defined]
RECOMPUTES: tuple[str, ...] = Recompute.__args__  # type: ignore[attr-defined]
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained: precision, optimizer, convention, sharding and the activation settings."""

    batch: int = 1
    seq_len: int = 2048
    precision: Precision = "mixed-bf16"
    optimizer: Optimizer = "adamw"
    convention: Convention = "zero-16"
    zero_stage: int = 0
    n_devices: int = 1
    recompute: Recompute = "none"
    flash_attention: bool = False
    dropout: bool | None = None  # None: dropout masks for GELU-MLP blocks (Korthikanti), none for gated blocks
    logits: bool = True  # count the logits kept for the loss

    def __post_init__(self) -> None:
        require_positive("batch", self.batch)
        require_positive("seq_len", self.seq_len)
        require_positive("n_devices", self.n_devices)
        require_choice("precision", self.precision, PRECISIONS)
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        require_choice("convention", self.convention, CONVENTIONS)
        require_choice("recompute", self.recompute, RECOMPUTES)
        require_choice("zero_stage", self.zero_stage, ZERO_STAGES)

    @property
    def activation_bytes(self) -> int:
        """Bytes per activation element: 4 in fp32 training, else 2."""
        return 4 if self.precision == "fp32" else 2


# -- model states -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateBytes:
    """Bytes per trainable parameter of each model-state term, and per optimizer-state element."""

    weights: int
    master: int
    gradients: int
    state_element: int
    note: str


def state_bytes(precision: str, optimizer: str, convention: str = "zero-16") -> StateBytes:
    """Bytes per parameter by precision (ZeRO paper sec. 3.1; 18 / 20 B variants per ``convention``)."""
    require_choice("precision", precision, PRECISIONS)
    require_choice("optimizer", optimizer, OPTIMIZERS)
    require_choice("convention", convention, CONVENTIONS)
    element = 1 if optimizer == "adam-8bit" else 2 if precision == "bf16" else 4
    if precision == "fp32":
        return StateBytes(4, 0, 4, element, "fp32 weights and gradients, no master copy (16/18/20 B conventions "
                                            "apply to mixed precision only)")
    if precision == "bf16":
        return StateBytes(2, 0, 2, element, "pure bf16: weights, gradients and optimizer states in bf16, no master "
                                            "copy (16/18/20 B conventions apply to mixed precision only)")
    grads = {"zero-16": 2, "fp32-grads-18": 4, "deepspeed-20": 6}[convention]
    how = {"zero-16": "16-bit gradients (ZeRO paper, 16 B/param with Adam)",
           "fp32-grads-18": "fp32 gradients (HF / llm-analysis, 18 B/param with Adam)",
           "deepspeed-20": "16-bit + fp32 gradients (DeepSpeed estimator, 20 B/param with Adam)"}[convention]
    return StateBytes(2, 4, grads, element, f"{precision}: 16-bit weights, fp32 master weights, {how}")


def optimizer_state_elements(optimizer: str, shapes: Sequence[tuple[int, ...]]) -> int:
    """Optimizer state elements: SGD 0, momentum N, Adam/AdamW/8-bit Adam 2N, Adafactor rows + cols per matrix.

    Adafactor (Shazeer & Stern 2018; transformers' ``Adafactor``, beta1=None): a tensor of shape
    (..., r, c) keeps prod(...)·(r + c) factored second-moment entries; vectors keep a full one.
    """
    require_choice("optimizer", optimizer, OPTIMIZERS)
    n = sum(math.prod(s) for s in shapes)
    if optimizer == "adafactor":
        return sum(math.prod(s[:-2]) * (s[-2] + s[-1]) if len(s) >= 2 else math.prod(s) for s in shapes)
    return {"sgd": 0, "sgd-momentum": n, "adam": 2 * n, "adamw": 2 * n, "adam-8bit": 2 * n}[optimizer]


@dataclass(frozen=True)
class ModelStates:
    """Per-device bytes of the model states after ZeRO sharding."""

    weights_bytes: int
    master_weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    note: str


def model_states(shapes: Sequence[tuple[int, ...]], settings: TrainSettings) -> ModelStates:
    """Weights, master weights, gradients and optimizer states per device (ZeRO stage ``zero_stage`` over N)."""
    n = sum(math.prod(s) for s in shapes)
    sb = state_bytes(settings.precision, settings.optimizer, settings.convention)
    optim = optimizer_state_elements(settings.optimizer, shapes) * sb.state_element
    stage, devices = settings.zero_stage, settings.n_devices
    shard = lambda b, from_stage: ceil_div(b, devices) if stage >= from_stage else b  # noqa: E731
    note = sb.note + f"; {settings.optimizer} states {sb.state_element} B/element"
    if stage:
        note += f"; ZeRO-{stage} over {devices} devices"
    return ModelStates(
        weights_bytes=shard(n * sb.weights, 3), master_weights_bytes=shard(n * sb.master, 1),
        gradients_bytes=shard(n * sb.gradients, 2), optimizer_bytes=shard(optim, 1), note=note,
    )


# -- activations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationSettings:
    """What the activation formula needs: sizes, element bytes, dropout masks, attention kernel."""

    seq_len: int
    batch: int
    element_bytes: int = 2
    dropout: bool = True
    flash_attention: bool = False
    keep_scores: bool = True  # False under selective recomputation
    # Linear roles whose input is saved for a weight gradient; None = all (full training). PyTorch's
    # autograd does not save the input of a frozen Linear (only its weight is needed for grad_input).
    trained_roles: frozenset[str] | None = None

    def saves_input(self, *roles: str) -> bool:
        """Whether any of these linear roles needs its input saved (it is trained)."""
        return self.trained_roles is None or any(r in self.trained_roles for r in roles)


def attention_activation_bytes(spec: ModelSpec, a: ActivationSettings) -> int:
    """Attention inputs kept for backward: s·b·(e·h + 2e·d_q + 2e·d_kv) + score terms (Korthikanti Table 2)."""
    s, b, e, h = a.seq_len, a.batch, a.element_bytes, spec.d_model
    d_q, d_kv, heads = spec.n_heads * spec.d_head, spec.kv_heads * spec.d_head, spec.n_heads
    kept = e * h * a.saves_input("q", "k", "v", "qkv") + e * d_q + 2 * e * d_kv + e * d_q * a.saves_input("o")
    linear = s * b * kept + (s * b * h if a.dropout else 0)
    if a.flash_attention:
        return linear + 4 * heads * s * b  # fp32 log-sum-exp per row
    if not a.keep_scores:
        return linear
    scores = heads * s * s * b
    return linear + e * scores + ((1 + e) * scores if a.dropout else 0)


def ffn_activation_bytes(spec: ModelSpec, a: ActivationSettings) -> int:
    """FFN inputs kept for backward: s·b·(e·h + 2e·f) for GELU/ReLU, s·b·(e·h + 4e·f) gated; x k experts for MoE."""
    s, b, e, h, f = a.seq_len, a.batch, a.element_bytes, spec.d_model, spec.d_ff
    down_input = e * f * a.saves_input("down")
    inner = 3 * e * f + down_input if spec.ffn_kind in ("swiglu", "geglu") else e * f + down_input
    k = spec.experts_per_token if spec.is_moe else 1
    ffn_input = s * b * e * h * a.saves_input("gate", "up", "gate_up")
    return ffn_input + k * s * b * inner + (s * b * h if a.dropout else 0)


def layer_activation_bytes(spec: ModelSpec, a: ActivationSettings, cross: bool = False) -> int:
    """One block's activations: attention + FFN + 2 norm inputs (2·e·s·b·h); + cross-attention in enc-dec decoders.

    Cross-attention is counted like self-attention over an encoder as long as the decoder input.
    """
    norms = 2 * a.element_bytes * a.seq_len * a.batch * spec.d_model
    attn = attention_activation_bytes(spec, a)
    if cross:
        attn += attn + a.element_bytes * a.seq_len * a.batch * spec.d_model  # cross block and its norm
    return attn + ffn_activation_bytes(spec, a) + norms


def activation_bytes(spec: ModelSpec, settings: TrainSettings,
                     trained_roles: frozenset[str] | None = None) -> tuple[int, str]:
    """All layers' activations under the recompute setting, and how they were counted.

    ``trained_roles``: the linear roles with trainable weights (None: all, full training).
    """
    dropout = settings.dropout if settings.dropout is not None else spec.ffn_kind == "mlp"
    a = ActivationSettings(settings.seq_len, settings.batch, settings.activation_bytes, dropout,
                           settings.flash_attention, keep_scores=settings.recompute != "selective",
                           trained_roles=trained_roles)
    enc, dec = (spec.n_encoder_layers, spec.n_layers) if spec.family == "encoder-decoder" else (0, spec.n_layers)
    cross = spec.family == "encoder-decoder"
    per_dec = layer_activation_bytes(spec, a, cross=cross)
    per_enc = layer_activation_bytes(spec, a)
    how = (f"Korthikanti et al. 2022 bookkeeping, {a.element_bytes}-byte activations, "
           f"{'1-byte dropout masks' if dropout else 'no dropout'}, "
           f"{'FlashAttention (fp32 LSE, no s^2 terms)' if settings.flash_attention else 'attention scores kept'}")
    if settings.recompute == "full":
        inputs = a.element_bytes * a.seq_len * a.batch * spec.d_model * spec.total_layers
        return inputs + max(per_dec, per_enc if enc else 0), how + "; full recompute: layer inputs + one layer"
    if settings.recompute == "selective":
        how += "; selective recompute (attention core recomputed)"
    if trained_roles is not None:
        how += f"; inputs of frozen linears not saved (trained roles: {', '.join(sorted(trained_roles)) or 'none'})"
    return enc * per_enc + dec * per_dec, how


def logits_bytes(spec: ModelSpec, settings: TrainSettings) -> int:
    """Logits kept for the loss: s·b·V·(e + 4): activation-dtype logits plus the fp32 log-softmax saved by the loss."""
    if spec.family == "encoder" or not settings.logits:
        return 0
    return settings.seq_len * settings.batch * spec.vocab_size * (settings.activation_bytes + 4)


# -- the estimate -----------------------------------------------------------------------------------


def train_memory(spec: ModelSpec, settings: TrainSettings = TrainSettings(),
                 inventory: Sequence[Tensor] | None = None) -> MemoryEstimate:
    """Per-device training memory: model states (ZeRO) + activations (Korthikanti) + logits (sheet sec. 3)."""
    if inventory is None:
        from llmkit.calc.params import tensors

        inventory = tensors(spec)
    shapes = [t.shape for t in inventory]
    states = model_states(shapes, settings)
    act, how = activation_bytes(spec, settings)
    breakdown = {
        "weights_bytes": states.weights_bytes,
        "master_weights_bytes": states.master_weights_bytes,
        "gradients_bytes": states.gradients_bytes,
        "optimizer_bytes": states.optimizer_bytes,
        "activations_bytes": act,
        "logits_bytes": logits_bytes(spec, settings),
    }
    notes = (states.note, how, "logits: s*b*V*(e + 4) bytes (activation-dtype logits + fp32 log-softmax for the loss)",
             "not counted: framework workspace, allocator fragmentation, CUDA context")
    n = sum(math.prod(s) for s in shapes)
    return MemoryEstimate("train", {k: v for k, v in breakdown.items() if v or k != "master_weights_bytes"},
                          notes, trainable_params=n)

