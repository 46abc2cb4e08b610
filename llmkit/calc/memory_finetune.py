"""Fine-tuning memory and trainable parameters (sheet sections 7 and 13).

Trainable parameters, counted as peft counts them (``get_nb_trainable_parameters``):

    LoRA (Hu et al. 2021)        r·(d_in + d_out) per wrapped Linear / Conv1D
    prefix tuning (Li & Liang)   p · L · 2 · n_kv·d_head          (peft PrefixTuning, no projection)
    prompt tuning (Lester)       p · d_model  (x 2 for encoder-decoders: peft's two submodules)
    adapters (Houlsby 2019)      2 per layer · (2·d·m + d + m)   (bottleneck m, both projections with bias)
    IA3 (Liu et al. 2022)        one vector per target: d_out for k / v, d_in for feed-forward targets

LoRA targets by role: "qv" (q, v), "qkvo" (q, k, v, o), "all-linear" (every Linear /
Conv1D but the LM head, peft's ``all-linear``; for Mixtral also the router and the stacked
expert tensors, as peft 0.21 wraps them). A fused projection (GPT-2 ``c_attn``, Phi-3
``qkv_proj`` / ``gate_up_proj``) is one module, so it is wrapped whole.

Memory = frozen base weights (in their format: bf16, or NF4 for QLoRA) + the trainable
parameters' states (peft keeps adapters in fp32: 4 B weights + 4 B gradients + the
optimizer) + activations (gradients flow through every layer, but autograd keeps no input
of a frozen Linear). Prompt tuning lengthens every sequence by the virtual tokens; prefix
tuning's longer keys (p more per layer) and the adapters' own small activations are not counted.

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Sequence

from llmkit.calc.formats import format_bytes
from llmkit.calc.memory import MemoryEstimate, require_choice, require_positive
from llmkit.calc.memory_train import (
    TrainSettings,
    activation_bytes,
    logits_bytes,
    optimizer_state_elements,
    train_memory,
)
from llmkit.spec import ModelSpec

if TYPE_CHECKING:
    from llmkit.calc.params import Tensor

Method = Literal["full", "lora", "qlora", "prefix", "prompt", "adapter", "ia3"]
LoraTargets = Literal["qv", "qkvo", "all-linear"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]
LORA_TARGETS: tuple[str, ...] = LoraTargets.__args__  # type: ignore[attr-defined]

_TARGET_ROLES = {"qv": ("q", "v", "qkv"), "qkvo": ("q", "k", "v", "o", "qkv")}

# peft's default IA3 targets per model type (TRANSFORMERS_MODELS_TO_IA3_*_MAPPING), as roles:
# (scaled on the output: vector of d_out, feed-forward scaled on the input: vector of d_in).
# BERT's "output.dense" also matches "attention.output.dense" (suffix match), so o is feed-forward there.
IA3_TARGETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "llama": (("k", "v"), ("down",)), "mistral": (("k", "v"), ("down",)), "qwen2": (("q", "v"), ("down",)),
    "mixtral": (("k", "v"), ()), "gpt2": (("qkv",), ("down",)), "t5": (("k", "v"), ("down",)),
    "bart": (("q", "v"), ("down",)), "bert": (("k", "v"), ("o", "down")), "roberta": (("k", "v"), ("o", "down")),
    "deberta-v2": (("k", "v"), ("o", "down")),
}


@dataclass(frozen=True)
class FinetuneSettings:
    """A PEFT method with its hyper-parameters, and the training settings underneath."""

    method: Method = "lora"
    rank: int = 16
    alpha: int | None = None  # LoRA scaling alpha / rank; None: alpha = rank (scaling 1)
    targets: LoraTargets = "qv"
    virtual_tokens: int = 20
    bottleneck: int = 64
    double_quant: bool = True  # QLoRA: NF4 with double-quantized constants
    base_format: str = "bf16"  # frozen base weights (LoRA, prefix, prompt, adapters, IA3)
    adapter_dtype: Literal["fp32", "bf16"] = "fp32"  # peft's autocast_adapter_dtype keeps adapters in fp32
    paged_optimizer: bool = False  # QLoRA's paged optimizer: states may spill to CPU RAM on spikes
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        require_choice("method", self.method, METHODS)
        require_choice("LoRA targets", self.targets, LORA_TARGETS)
        require_choice("adapter_dtype", self.adapter_dtype, ("fp32", "bf16"))
        require_positive("rank", self.rank)
        require_positive("virtual_tokens", self.virtual_tokens)
        require_positive("bottleneck", self.bottleneck)
        if self.alpha is not None:
            require_positive("alpha", self.alpha)

    @property
    def scaling(self) -> float:
        """LoRA's alpha / r (Hu et al. 2021)."""
        return (self.alpha or self.rank) / self.rank


# -- trainable parameters ----------------------------------------------------------------------


def lora_targets(inventory: Sequence[Tensor], targets: str) -> list[Tensor]:
    """The weights peft wraps for a preset: by role, fused projections whole, never the LM head."""
    require_choice("LoRA targets", targets, LORA_TARGETS)
    if targets == "all-linear":
        moe = [t for t in inventory if t.component in ("router", "experts")]
        return [t for t in inventory if t.is_linear_weight and t.role != "head"] + moe
    roles = _TARGET_ROLES[targets]
    return [t for t in inventory if t.is_linear_weight and t.role in roles]


def lora_rank_of(t: Tensor, rank: int) -> int:
    """The rank peft gives one target: r for a Linear; r·E for stacked experts (E, out, in), 2·r·E for the fused gate_up.

    Stacked experts are wrapped as one parameter (peft's ``ParamWrapper``, peft 0.21): A is (r·E, in), B (out, r·E).
    """
    if t.component == "experts" and len(t.shape) == 3:
        return rank * t.shape[0] * (2 if t.role == "gate_up" else 1)
    return rank


def lora_params(inventory: Sequence[Tensor], rank: int, targets: str = "qv") -> int:
    """LoRA trainable parameters: sum of r·(d_in + d_out) over wrapped modules (Hu et al. 2021)."""
    require_positive("rank", rank)
    return sum(lora_rank_of(t, rank) * sum(t.in_out) for t in lora_targets(inventory, targets))


def prefix_params(spec: ModelSpec, virtual_tokens: int) -> int:
    """Prefix tuning: p · L · 2 · n_kv·d_head (peft, no projection; L = config num_layers, the encoder's for enc-dec)."""
    layers = spec.n_encoder_layers if spec.family == "encoder-decoder" else spec.n_layers
    return virtual_tokens * layers * 2 * spec.kv_heads * spec.d_head


def prompt_params(spec: ModelSpec, virtual_tokens: int) -> int:
    """Prompt tuning: p · d_model, times 2 for encoder-decoders (peft's num_transformer_submodules)."""
    return virtual_tokens * spec.d_model * (2 if spec.family == "encoder-decoder" else 1)


def adapter_params(spec: ModelSpec, bottleneck: int) -> int:
    """Houlsby adapters: 2 per layer, each down (d·m + m) and up (m·d + d) = 2·d·m + d + m (Houlsby et al. 2019)."""
    d, m = spec.d_model, bottleneck
    return 2 * spec.total_layers * (2 * d * m + d + m)


def ia3_params(spec: ModelSpec, inventory: Sequence[Tensor]) -> int:
    """IA3: a d_out vector per k/v target, a d_in vector per feed-forward target (peft's default targets)."""
    out_roles, ff_roles = IA3_TARGETS.get(spec.hf_model_type or "llama", IA3_TARGETS["llama"])
    total = 0
    for t in inventory:
        if not t.is_linear_weight:
            continue
        d_in, d_out = t.in_out
        total += d_out if t.role in out_roles else d_in if t.role in ff_roles else 0
    return total


def trainable_shapes(spec: ModelSpec, settings: FinetuneSettings, inventory: Sequence[Tensor]) -> list[tuple[int, ...]]:
    """Shapes of the trainable tensors: LoRA's A (r, d_in) and B (d_out, r) per target, else one flat vector."""
    if settings.method not in ("lora", "qlora"):
        return [(trainable_params(spec, settings, inventory),)]
    shapes = []
    for t in lora_targets(inventory, settings.targets):
        r = lora_rank_of(t, settings.rank)
        d_in, d_out = t.in_out
        shapes += [(r, d_in), (d_out, r)]
    return shapes


def trainable_params(spec: ModelSpec, settings: FinetuneSettings, inventory: Sequence[Tensor] | None = None) -> int:
    """Exact trainable parameters of a fine-tuning method (peft's count for the PEFT methods)."""
    inventory = _inventory(spec, inventory)
    m = settings.method
    if m == "full":
        return sum(t.numel for t in inventory)
    if m in ("lora", "qlora"):
        return lora_params(inventory, settings.rank, settings.targets)
    if m == "prefix":
        return prefix_params(spec, settings.virtual_tokens)
    if m == "prompt":
        return prompt_params(spec, settings.virtual_tokens)
    if m == "adapter":
        return adapter_params(spec, settings.bottleneck)
    return ia3_params(spec, inventory)


# -- memory ---------------------------------------------------------------------------------------


def trained_roles(settings: FinetuneSettings, inventory: Sequence[Tensor]) -> frozenset[str]:
    """Linear roles whose inputs autograd must keep: LoRA's targets, IA3's feed-forward targets, else none."""
    if settings.method in ("lora", "qlora"):
        return frozenset(t.role for t in lora_targets(inventory, settings.targets))
    if settings.method == "ia3":
        return frozenset(("down",))
    return frozenset()


def base_format(settings: FinetuneSettings) -> str:
    """The frozen base's format: NF4 (with or without double quantization) for QLoRA, else ``base_format``."""
    if settings.method == "qlora":
        return "nf4-dq" if settings.double_quant else "nf4"
    return settings.base_format


def finetune_memory(spec: ModelSpec, settings: FinetuneSettings = FinetuneSettings(),
                    inventory: Sequence[Tensor] | None = None) -> MemoryEstimate:
    """Fine-tuning memory: frozen base + trainable states + activations (+ logits) (sheet sections 7, 13)."""
    inventory = _inventory(spec, inventory)
    if settings.method == "full":
        est = train_memory(spec, settings.train, inventory)
        return MemoryEstimate("finetune", est.breakdown, est.notes, est.trainable_params)
    n = trainable_params(spec, settings, inventory)
    train = settings.train
    if settings.method == "prompt":  # virtual tokens lengthen every sequence
        train = replace(train, seq_len=train.seq_len + settings.virtual_tokens)
    fmt = base_format(settings)
    base = format_bytes(spec, inventory, fmt, compute_dtype="bf16" if train.precision != "mixed-fp16" else "fp16")
    w = 4 if settings.adapter_dtype == "fp32" else 2
    element = 1 if train.optimizer == "adam-8bit" else 4
    optim = optimizer_state_elements(train.optimizer, trainable_shapes(spec, settings, inventory)) * element
    act, how = activation_bytes(spec, train, trained_roles(settings, inventory))
    breakdown = {
        "weights_bytes": base.total_bytes + n * w,
        "gradients_bytes": n * w,
        "optimizer_bytes": optim,
        "activations_bytes": act,
        "logits_bytes": logits_bytes(spec, train),
    }
    notes = [
        f"{settings.method}: {n:,} trainable parameters in {settings.adapter_dtype} "
        f"(weights and gradients {w} B each, {train.optimizer} states {element} B/element)",
        f"frozen base in {fmt}: {base.convention}",
        how,
    ]
    if settings.method in ("lora", "qlora"):
        notes.append(f"LoRA r={settings.rank}, alpha/r={settings.scaling:g}, targets {settings.targets}")
    if settings.paged_optimizer:
        notes.append("paged optimizer: optimizer states can page to CPU RAM on memory spikes (counted on the GPU here)")
    return MemoryEstimate("finetune", breakdown, tuple(notes), trainable_params=n)


def _inventory(spec: ModelSpec, inventory: Sequence[Tensor] | None) -> Sequence[Tensor]:
    if inventory is not None:
        return inventory
    from llmkit.calc.params import tensors

    return tensors(spec)


def lora_fraction(spec: ModelSpec, rank: int, targets: str = "qv") -> float:
    """LoRA parameters as a fraction of the base model's parameters."""
    inventory = _inventory(spec, None)
    return lora_params(inventory, rank, targets) / sum(t.numel for t in inventory)
