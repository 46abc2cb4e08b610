"""The sheet's decision matrices as functions that explain their choice (sheet sections 7, 8, 9, 13).

Every adviser returns an :class:`Advice`: the choice, the reasons in order (each citing the
sheet's rule or a computed number), and the alternatives that were considered. Memory checks
use the calculator (``calc.memory_finetune``, ``calc.memory_infer``), not the sheet's
rounded VRAM column.

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmkit.calc.memory import GB, require_choice, require_positive
from llmkit.calc.memory_finetune import FinetuneSettings, finetune_memory
from llmkit.calc.memory_infer import InferSettings, infer_memory
from llmkit.calc.memory_train import TrainSettings
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec


@dataclass(frozen=True)
class Advice:
    """A choice, why (in order), and what else was considered."""

    choice: str
    reasons: tuple[str, ...]
    alternatives: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict)


def _gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


# -- section 7: fine-tuning method --------------------------------------------------------------

Goal = Literal["task", "alignment", "multi-task"]
GOALS: tuple[str, ...] = Goal.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FinetuneQuestion:
    """What the fine-tuning decision needs: data size, memory available, goal and the training shape."""

    examples: int
    memory_bytes: int
    goal: Goal = "task"
    seq_len: int = 512
    batch: int = 1
    recompute: Literal["none", "selective", "full"] = "full"  # gradient checkpointing, as PEFT recipes use

    def __post_init__(self) -> None:
        if self.examples < 0:
            raise LlmkitError(f"examples must be non-negative; got {self.examples}")
        require_positive("memory_bytes", self.memory_bytes)
        require_choice("goal", self.goal, GOALS)


def _fits(spec: ModelSpec, method: str, q: FinetuneQuestion) -> tuple[bool, int]:
    train = TrainSettings(batch=q.batch, seq_len=q.seq_len, recompute=q.recompute, flash_attention=True)
    est = finetune_memory(spec, FinetuneSettings(method=method, targets="all-linear", train=train))
    return est.total_bytes <= q.memory_bytes, est.total_bytes


def finetune_method(spec: ModelSpec, q: FinetuneQuestion) -> Advice:
    """Sheet section 7: full FT for > 100K examples, LoRA for 1K-100K, QLoRA on small GPUs, prompting below 100."""
    need = {m: _fits(spec, m, q) for m in ("full", "lora", "qlora")}
    sizes = {m: _gb(n) for m, (_, n) in need.items()}
    reasons = [f"memory available {_gb(q.memory_bytes)}; needed at seq_len {q.seq_len}, batch {q.batch}, "
               f"{q.recompute} recompute: " + ", ".join(f"{m} {s}" for m, s in sizes.items())]
    if q.goal == "alignment":
        choice = "dpo"
        reasons.append("goal is preference alignment: RLHF / DPO (sheet: 2-3x fine-tuning memory, a different axis)")
        reasons.append("DPO runs on top of LoRA/QLoRA when full fine-tuning does not fit")
        return Advice(choice, tuple(reasons), ("rlhf", "lora", "qlora"), {"needed_bytes": need})
    if q.examples < 100:
        reasons.append(f"{q.examples} examples < 100: in-context learning (prompting), no training (sheet sec. 7)")
        return Advice("in-context", tuple(reasons), ("prompt", "lora"), {"needed_bytes": need})
    if q.goal == "multi-task":
        reasons.append("modular multi-task: adapters, one per task, swapped at inference (sheet sec. 7)")
        return Advice("adapter", tuple(reasons), ("lora",), {"needed_bytes": need})
    order = ["full", "lora", "qlora"] if q.examples > 100_000 else ["lora", "qlora"]
    rule = ("> 100K examples: full fine-tuning gives the best quality if it fits" if q.examples > 100_000
            else "100-100K examples: LoRA (QLoRA when the GPU is small); full fine-tuning would overfit and cost more")
    reasons.append(f"{q.examples:,} examples: {rule} (sheet sec. 7)")
    for method in order:
        ok, n = need[method]
        if ok:
            reasons.append(f"{method} fits: {_gb(n)} <= {_gb(q.memory_bytes)}")
            return Advice(method, tuple(reasons), tuple(m for m in order if m != method), {"needed_bytes": need})
        reasons.append(f"{method} does not fit: {_gb(n)} > {_gb(q.memory_bytes)}")
    reasons.append("nothing fits: shorten seq_len, lower the batch, or pick a smaller model")
    return Advice("none", tuple(reasons), tuple(order), {"needed_bytes": need})


# -- section 8: quantization ---------------------------------------------------------------------

Target = Literal["cloud-gpu", "cloud-gpu-cost", "consumer-gpu", "cpu", "mobile"]
TARGETS: tuple[str, ...] = Target.__args__  # type: ignore[attr-defined]

# Sheet sec. 8 "Quality order (best to worst)": BF16 > INT8 > GPTQ-4bit ≈ AWQ-4bit > GGUF Q4_K_M > GGUF Q2_K.
# Each entry: (what to use, the format whose bytes we compute for it).
QUALITY_ORDER: dict[str, tuple[tuple[str, str], ...]] = {
    "cloud-gpu": (("bf16", "bf16"), ("int8", "int8"), ("gptq/awq 4-bit", "int4")),
    "cloud-gpu-cost": (("int8", "int8"), ("gptq/awq 4-bit", "int4")),
    "consumer-gpu": (("bf16", "bf16"), ("int8", "int8"), ("gptq/awq 4-bit", "int4"), ("gguf q4_k_m", "q4_k_m"),
                     ("gguf q2_k", "q2_k")),
    "cpu": (("gguf q8_0", "q8_0"), ("gguf q4_k_m", "q4_k_m"), ("gguf q2_k", "q2_k")),
    "mobile": (("int4 / ggml", "q4_0"), ("gguf q2_k", "q2_k")),
}
DEFAULT_CHOICE = {"cloud-gpu": "bf16", "cloud-gpu-cost": "int8", "consumer-gpu": "gptq/awq 4-bit",
                  "cpu": "gguf q4_k_m", "mobile": "int4 / ggml"}


def quantization(spec: ModelSpec, target: str, memory_bytes: int | None = None, seq_len: int = 4096) -> Advice:
    """Sheet section 8 decision guide; with a memory budget, the best-quality format whose weights + KV fit."""
    require_choice("target", target, TARGETS)
    if memory_bytes is None:
        why = f"target {target}: the sheet's choice is {DEFAULT_CHOICE[target]} (sec. 8 decision guide)"
        return Advice(DEFAULT_CHOICE[target], (why,), tuple(n for n, _ in QUALITY_ORDER[target]))
    require_positive("memory_bytes", memory_bytes)
    reasons = [f"target {target}, {_gb(memory_bytes)} available, context {seq_len}: best quality first "
               "(BF16 > INT8 > GPTQ/AWQ 4-bit > Q4_K_M > Q2_K, sheet sec. 8)"]
    needed: dict[str, int] = {}
    for name, fmt in QUALITY_ORDER[target]:
        n = infer_memory(spec, InferSettings(format=fmt, seq_len=seq_len)).total_bytes
        needed[name] = n
        if n <= memory_bytes:
            reasons.append(f"{name} fits: {_gb(n)} <= {_gb(memory_bytes)}")
            return Advice(name, tuple(reasons), tuple(k for k, _ in QUALITY_ORDER[target] if k != name),
                          {"needed_bytes": needed})
        reasons.append(f"{name} does not fit: {_gb(n)}")
    reasons.append("nothing fits: a smaller model, a shorter context or a quantized KV cache")
    return Advice("none", tuple(reasons), (), {"needed_bytes": needed})


# -- section 9: decoding presets -------------------------------------------------------------------


@dataclass(frozen=True)
class DecodingPreset:
    """Generation settings of one sheet preset (section 9 "Typical Parameter Values")."""

    name: str
    do_sample: bool
    temperature: float = 1.0
    temperature_range: tuple[float, float] = (1.0, 1.0)
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    num_beams_range: tuple[int, int] = (1, 1)
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    use_for: str = ""


PRESETS: dict[str, DecodingPreset] = {
    p.name: p
    for p in (
        DecodingPreset("factual", True, 0.1, (0.0, 0.2), 0.9, 50, use_for="factual answers, code"),
        DecodingPreset("code", True, 0.1, (0.0, 0.2), 0.9, 50, use_for="code generation"),
        DecodingPreset("balanced", True, 0.7, (0.7, 0.7), 0.9, 50, use_for="general chat (the default)"),
        DecodingPreset("creative", True, 1.0, (0.9, 1.2), 0.95, 100, use_for="stories, brainstorming"),
        DecodingPreset("translation", False, num_beams=4, num_beams_range=(4, 8), no_repeat_ngram_size=3,
                       length_penalty=1.0, use_for="machine translation, summarisation (beam search)"),
    )
}

_TASK_PRESET = {"factual": "factual", "qa": "factual", "code": "code", "chat": "balanced", "general": "balanced",
                "story": "creative", "creative": "creative", "brainstorm": "creative", "translation": "translation",
                "summarization": "translation"}


def decoding_preset(task: str) -> Advice:
    """Sheet section 9: the preset for a task, with its settings in ``details['preset']``."""
    require_choice("task", task, tuple(_TASK_PRESET))
    p = PRESETS[_TASK_PRESET[task]]
    if p.do_sample:
        why = (f"{task}: sample with temperature {p.temperature_range[0]}-{p.temperature_range[1]}, top_p {p.top_p}, "
               f"top_k {p.top_k} (sheet sec. 9: {p.use_for})")
    else:
        why = (f"{task}: beam search, {p.num_beams_range[0]}-{p.num_beams_range[1]} beams, no_repeat_ngram_size "
               f"{p.no_repeat_ngram_size}, length_penalty {p.length_penalty} (sheet sec. 9: {p.use_for})")
    return Advice(p.name, (why, "low T: confident but repetitive; high T: diverse but incoherent"),
                  tuple(n for n in PRESETS if n != p.name), {"preset": p})


# -- section 13: RAG vs fine-tuning -----------------------------------------------------------------


@dataclass(frozen=True)
class RagQuestion:
    """The sheet's RAG-vs-fine-tuning criteria (section 13) as yes/no facts plus the example count."""

    knowledge_changes: bool = False
    needs_citations: bool = False
    examples: int = 0
    style_or_format_change: bool = False
    task_specific_reasoning: bool = False
    latency_critical: bool = False


def rag_or_finetune(q: RagQuestion) -> Advice:
    """Sheet section 13: RAG for dynamic knowledge, citations, < 10K examples; FT for style, reasoning, latency."""
    rag = [why for ok, why in (
        (q.knowledge_changes, "knowledge is dynamic: retrieval stays current without retraining"),
        (q.needs_citations, "answers need source citations: retrieval returns the sources"),
        (q.examples < 10_000, f"{q.examples:,} examples < 10K: too few to teach knowledge by fine-tuning"),
    ) if ok]
    ft = [why for ok, why in (
        (q.style_or_format_change, "a style / format change: fine-tuning changes behaviour, retrieval does not"),
        (q.task_specific_reasoning, "task-specific reasoning is learned by fine-tuning"),
        (q.latency_critical, "latency matters: no retrieval step"),
        (q.examples >= 10_000 and not q.knowledge_changes, f"{q.examples:,} examples and static knowledge"),
    ) if ok]
    knowledge = q.knowledge_changes or q.needs_citations
    behaviour = q.style_or_format_change or q.task_specific_reasoning
    if knowledge and behaviour:
        return Advice("both", tuple(f"RAG: {r}" for r in rag) + tuple(f"fine-tune: {r}" for r in ft)
                      + ("fine-tune for behaviour, retrieve for knowledge",), ("rag", "fine-tune"))
    if ft and len(ft) >= len(rag):
        return Advice("fine-tune", tuple(ft) + tuple(f"against: {r}" for r in rag), ("rag", "both"))
    return Advice("rag", tuple(rag) + tuple(f"against: {r}" for r in ft), ("fine-tune", "both"))

__all__ = [
    "Advice", "FinetuneQuestion", "finetune_method", "quantization", "DecodingPreset", "PRESETS",
    "decoding_preset", "RagQuestion", "rag_or_finetune", "QUALITY_ORDER",
]
