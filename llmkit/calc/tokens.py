"""Tokens, words, pages and cost by the sheet's rules of thumb (sheet section 5).

    English text      ~4 characters per token (GPT-4 tokenizer)
    code              ~3-5 characters per token (midpoint 4)
    non-Latin scripts 1-2 characters per token (midpoint 1.5; CJK is expensive)
    words             ~1.3 tokens per word
    pages             1,000 tokens ≈ 750 words ≈ 3 pages (250 words per page)

The two word rules disagree slightly: 1.3 tokens/word gives 769 words per 1,000 tokens,
"1,000 tokens ≈ 750 words" is 1.333 tokens/word. :data:`RULES` keeps both, named.
These are rules of thumb, not a tokenizer: ``llmkit.tokenize`` counts real tokens.

Cost: price per 1K tokens, or from a GPU-hour price and a throughput
($/token = $/GPU-h · n_GPU / (3600 · tokens/s), llm-analysis ``compute_cost_per_1k_tokens``).

Pure Python: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmkit.calc.memory import require_choice
from llmkit.errors import LlmkitError

TextKind = Literal["english", "code", "non-latin"]
TEXT_KINDS: tuple[str, ...] = TextKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Rules:
    """The sheet's rules of thumb (section 5) as numbers."""

    chars_per_token: dict[str, float]
    tokens_per_word: float = 1.3
    words_per_1k_tokens: float = 750.0
    words_per_page: float = 250.0


RULES = Rules(chars_per_token={"english": 4.0, "code": 4.0, "non-latin": 1.5})


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise LlmkitError(f"{name} must be non-negative; got {value}")


def tokens_from_chars(chars: int, kind: str = "english") -> float:
    """tokens ≈ characters / chars_per_token (4 for English, sheet sec. 5)."""
    require_choice("text kind", kind, TEXT_KINDS)
    _non_negative("chars", chars)
    return chars / RULES.chars_per_token[kind]


def chars_from_tokens(tokens: int, kind: str = "english") -> float:
    """characters ≈ tokens · chars_per_token."""
    require_choice("text kind", kind, TEXT_KINDS)
    _non_negative("tokens", tokens)
    return tokens * RULES.chars_per_token[kind]


def tokens_from_words(words: int) -> float:
    """tokens ≈ 1.3 · words (English, sheet sec. 5)."""
    _non_negative("words", words)
    return words * RULES.tokens_per_word


def words_from_tokens(tokens: int) -> float:
    """words ≈ tokens · 750 / 1000 (the sheet's "1,000 tokens ≈ 750 words")."""
    _non_negative("tokens", tokens)
    return tokens * RULES.words_per_1k_tokens / 1000


def pages_from_tokens(tokens: int) -> float:
    """pages ≈ words / 250 (1,000 tokens ≈ 3 pages)."""
    return words_from_tokens(tokens) / RULES.words_per_page


def cost(tokens: int, price_per_1k: float) -> float:
    """Cost = tokens / 1000 · price per 1K tokens."""
    _non_negative("tokens", tokens)
    _non_negative("price_per_1k", price_per_1k)
    return tokens / 1000 * price_per_1k


def cost_per_1k_tokens(gpu_hour_price: float, tokens_per_second: float, n_gpus: int = 1) -> float:
    """$ per 1K tokens = 1000 · $/GPU-h · n_GPU / (3600 · tokens/s) (llm-analysis)."""
    _non_negative("gpu_hour_price", gpu_hour_price)
    if tokens_per_second <= 0 or n_gpus < 1:
        raise LlmkitError("tokens_per_second must be positive and n_gpus at least 1")
    return 1000 * gpu_hour_price * n_gpus / (3600 * tokens_per_second)
