"""GenerationConfig: every setting of one generation, named as transformers' ``generate`` names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmkit.errors import LlmkitError

Strategy = Literal["greedy", "sample", "beam", "contrastive"]
EarlyStopping = Literal[True, False, "never"]


@dataclass(frozen=True)
class GenerationConfig:
    """How many tokens, how each is chosen, and when to stop.

    Strategy (as transformers picks it): num_beams > 1 -> beam search; penalty_alpha > 0 with
    top_k > 1 -> contrastive search; do_sample -> sampling; else greedy. Sampling draws from
    softmax(processed logits) with a torch.Generator seeded by ``seed``; the processors and their
    order are in :mod:`llmkit.generate.sampling`. Generation stops at max_new_tokens, at any of
    ``eos_ids`` (None: the tokenizer's EOS; () never), or when the text contains one of ``stop``.
    ``num_assistant_tokens`` is k of speculative decoding (used when a draft model is given).
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    forced_eos_token_id: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: EarlyStopping = False
    num_return_sequences: int = 1
    penalty_alpha: float | None = None
    num_assistant_tokens: int = 5
    seed: int | None = None
    stop: tuple[str, ...] = ()
    eos_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be at least 1; got {self.max_new_tokens}"),
            (self.temperature > 0, f"temperature must be positive; got {self.temperature} (use greedy decoding for T=0)"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be at least 1; got {self.top_k}"),
            (self.top_p is None or 0 < self.top_p <= 1, f"top_p must be in (0, 1]; got {self.top_p}"),
            (self.min_p is None or 0 <= self.min_p <= 1, f"min_p must be in [0, 1]; got {self.min_p}"),
            (self.typical_p is None or 0 < self.typical_p <= 1, f"typical_p must be in (0, 1]; got {self.typical_p}"),
            (self.repetition_penalty is None or self.repetition_penalty > 0,
             f"repetition_penalty must be positive; got {self.repetition_penalty}"),
            (self.no_repeat_ngram_size is None or self.no_repeat_ngram_size >= 1,
             f"no_repeat_ngram_size must be at least 1; got {self.no_repeat_ngram_size}"),
            (self.num_beams >= 1, f"num_beams must be at least 1; got {self.num_beams}"),
            (self.num_return_sequences >= 1, f"num_return_sequences must be at least 1; got {self.num_return_sequences}"),
            (self.num_beams == 1 or self.num_return_sequences <= self.num_beams,
             f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})"),
            (self.num_beams > 1 or self.do_sample or self.num_return_sequences == 1,
             "num_return_sequences > 1 needs beam search (--num-beams) or sampling (--do-sample)"),
            (self.penalty_alpha is None or 0 <= self.penalty_alpha <= 1,
             f"penalty_alpha must be in [0, 1]; got {self.penalty_alpha}"),
            (self.num_assistant_tokens >= 1, f"num_assistant_tokens must be at least 1; got {self.num_assistant_tokens}"),
            (self.early_stopping in (True, False, "never"),
             f"early_stopping must be true, false or 'never'; got {self.early_stopping!r}"),
            (all(self.bad_words_ids), "bad_words_ids must not contain an empty sequence"),
            (all(self.stop), "stop strings must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise LlmkitError(message)
        if self.strategy == "beam" and self.do_sample:
            raise LlmkitError("beam sampling is not supported: use --num-beams without --do-sample")

    @property
    def strategy(self) -> Strategy:
        """Which search runs, decided as transformers decides it."""
        if self.num_beams > 1:
            return "beam"
        if self.penalty_alpha is not None and self.penalty_alpha > 0 and (self.top_k or 0) > 1 and not self.do_sample:
            return "contrastive"
        return "sample" if self.do_sample else "greedy"
