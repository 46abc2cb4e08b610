"""GenerationConfig: every setting of one generation, named as transformers' ``generate`` names them."""

from __future__ import annotations

from dataclasses import dataclass

from llmkit.errors import LlmkitError


@dataclass(frozen=True)
class GenerationConfig:
    """How many tokens, how each is chosen, and when to stop.

    Greedy (do_sample False) takes the argmax; sampling draws from
    softmax(top_p(top_k(logits / temperature))) with a torch.Generator seeded by ``seed``.
    Generation stops at max_new_tokens, at any of ``eos_ids`` (None: the tokenizer's EOS;
    () never), or when the text contains one of ``stop`` (the text is cut before it).
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    eos_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise LlmkitError(f"max_new_tokens must be at least 1; got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise LlmkitError(f"temperature must be positive; got {self.temperature} (use greedy decoding for T=0)")
        if self.top_k is not None and self.top_k < 1:
            raise LlmkitError(f"top_k must be at least 1; got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LlmkitError(f"top_p must be in (0, 1]; got {self.top_p}")
        if any(not s for s in self.stop):
            raise LlmkitError("stop strings must not be empty")
