"""calc.tokens: the sheet's rules of thumb (section 5) and cost."""

from __future__ import annotations

import pytest

from llmkit.calc.tokens import (
    chars_from_tokens,
    cost,
    cost_per_1k_tokens,
    pages_from_tokens,
    tokens_from_chars,
    tokens_from_words,
    words_from_tokens,
)
from llmkit.errors import LlmkitError


def test_sheet_rules_of_thumb():
    assert tokens_from_chars(4000) == 1000  # ~4 characters per token in English
    assert chars_from_tokens(1000, "non-latin") == 1500
    assert tokens_from_words(1000) == pytest.approx(1300)  # 1.3 tokens per word
    assert words_from_tokens(1000) == 750  # 1,000 tokens ≈ 750 words
    assert pages_from_tokens(1000) == 3  # ≈ 3 pages


def test_cost():
    assert cost(1_500_000, 0.002) == pytest.approx(3.0)
    # anchors §3.4: $2/GPU-h at 130 tokens/s = $4.27 per 1M output tokens
    assert cost_per_1k_tokens(2.0, 130.0) * 1000 == pytest.approx(4.27, abs=0.01)


def test_bad_inputs():
    with pytest.raises(LlmkitError, match="text kind"):
        tokens_from_chars(10, "klingon")
    with pytest.raises(LlmkitError, match="tokens"):
        cost(-1, 0.1)
