"""BERT normalizer: equal to HF's BertNormalizer, and the aligned path equal to the fast path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenize.normalize import BertNormalizer

SETTINGS = [BertNormalizer(), BertNormalizer(lowercase=False), BertNormalizer(strip_accents=False), BertNormalizer(handle_chinese_chars=False)]


def _hf(n: BertNormalizer):
    from tokenizers.normalizers import BertNormalizer as HFBertNormalizer

    return HFBertNormalizer(n.clean_text, n.handle_chinese_chars, n.strip_accents, n.lowercase)


@pytest.mark.parametrize("normalizer", SETTINGS, ids=repr)
def test_equals_hf_on_real_text(normalizer, real_text):
    hf = _hf(normalizer)
    for text in real_text.values():
        text = text[:100_000]
        assert normalizer(text) == hf.normalize_str(text)


@pytest.mark.parametrize("normalizer", SETTINGS, ids=repr)
def test_aligned_equals_fast_path(normalizer, real_text):
    for text in real_text.values():
        text = text[:30_000]
        normal, source = normalizer.aligned(text)
        assert normal == normalizer(text)
        assert len(source) == len(normal) and source == sorted(source)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_aligned_equals_fast_path_on_random_text(text):
    normal, source = BertNormalizer().aligned(text)
    assert normal == BertNormalizer()(text)
    assert all(0 <= i < len(text) for i in source)
