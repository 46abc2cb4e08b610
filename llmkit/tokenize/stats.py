"""How many tokens a text costs (sheet section 5, "Tokenization Rules of Thumb").

The sheet's rules for a GPT-4-class tokenizer on English: about 4 characters per token and
1.3 tokens per word (so 1,000 tokens ~ 750 words). :func:`token_stats` measures the same
ratios for a real tokenizer on a real text, so the rule can be checked, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmkit.tokenize.tokenizer import Tokenizer

SHEET_CHARS_PER_TOKEN_ENGLISH = 4.0  # "English text: ~4 characters per token (GPT-4 tokenizer)"
SHEET_TOKENS_PER_WORD_ENGLISH = 1.3  # "Token to word ratio: ~1.3 tokens per word in English"


@dataclass(frozen=True)
class TokenStats:
    """Counts over a corpus and the ratios the sheet quotes."""

    n_chars: int
    n_bytes: int
    n_words: int
    n_tokens: int

    @property
    def chars_per_token(self) -> float:
        """Characters per token (sheet: ~4 for English)."""
        return self.n_chars / max(self.n_tokens, 1)

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token."""
        return self.n_bytes / max(self.n_tokens, 1)

    @property
    def tokens_per_word(self) -> float:
        """Tokens per whitespace-separated word (sheet: ~1.3 for English)."""
        return self.n_tokens / max(self.n_words, 1)

    def cost(self, price_per_1k_tokens: float) -> float:
        """Price of the text: tokens / 1000 x price per 1K tokens."""
        return self.n_tokens / 1000 * price_per_1k_tokens


def token_stats(tokenizer: Tokenizer, texts: Iterable[str]) -> TokenStats:
    """Characters, bytes, words and tokens (no BOS/EOS/[CLS]/[SEP]) of ``texts``."""
    n_chars = n_bytes = n_words = n_tokens = 0
    for text in texts:
        n_chars += len(text)
        n_bytes += len(text.encode("utf-8"))
        n_words += len(text.split())
        n_tokens += len(tokenizer.encode(text, add_special=False))
    return TokenStats(n_chars, n_bytes, n_words, n_tokens)
