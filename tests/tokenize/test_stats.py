"""Token statistics: counts equal HF's token counts; the ratios are the counts divided."""

from __future__ import annotations

import pytest

from llmkit.tokenize.stats import TokenStats, token_stats


def test_counts_equal_hf(smollm2, hf_smollm2_digits, real_text):
    texts = [real_text["english"][:50_000], real_text["cjk"][:20_000]]
    stats = token_stats(smollm2, texts)
    assert stats.n_tokens == sum(len(hf_smollm2_digits.encode(t, add_special_tokens=False).ids) for t in texts)
    assert stats.n_words == sum(len(t.split()) for t in texts)
    assert stats.n_bytes == sum(len(t.encode()) for t in texts)


def test_ratios_and_cost():
    s = TokenStats(n_chars=4000, n_bytes=4400, n_words=750, n_tokens=1000)
    assert (s.chars_per_token, s.bytes_per_token, s.tokens_per_word) == (4.0, 4.4, pytest.approx(1.3333, abs=1e-4))
    assert s.cost(0.5) == 0.5
