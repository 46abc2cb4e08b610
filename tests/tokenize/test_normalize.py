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


# -- Unicode forms, lowercase, strip accents: composable steps, each equal to HF's -----------------

from llmkit.tokenize.normalize import (
    Lowercase,
    Metaspace,
    NormalizerSequence,
    StripAccents,
    UnicodeNormalizer,
)

STEPS = {
    "NFC": UnicodeNormalizer("NFC"),
    "NFD": UnicodeNormalizer("NFD"),
    "NFKC": UnicodeNormalizer("NFKC"),
    "NFKD": UnicodeNormalizer("NFKD"),
    "Lowercase": Lowercase(),
    "StripAccents": StripAccents(),
}


def _hf_step(name: str):
    from tokenizers import normalizers

    return getattr(normalizers, name)()


SEQUENCES = [["NFC"], ["NFD"], ["NFKC"], ["NFKD"], ["Lowercase"], ["NFD", "StripAccents"],
             ["NFD", "StripAccents", "Lowercase"], ["NFKD", "StripAccents", "Lowercase", "NFC"]]  # fmt: skip


@pytest.mark.parametrize("names", SEQUENCES, ids="+".join)
def test_unicode_steps_equal_hf_on_real_text(names, real_text):
    from tokenizers import normalizers

    ours = NormalizerSequence(tuple(STEPS[n] for n in names))
    hf = normalizers.Sequence([_hf_step(n) for n in names])
    for text in real_text.values():
        text = text[:100_000]
        assert ours(text) == hf.normalize_str(text)


@pytest.mark.parametrize("names", SEQUENCES, ids="+".join)
def test_unicode_steps_aligned_equal_fast_path(names, real_text):
    ours = NormalizerSequence(tuple(STEPS[n] for n in names))
    for text in list(real_text.values()) + ["e\u0301 A\u030a\u0323 ﬁ İ Σ ①"]:
        text = text[:30_000]
        normal, source = ours.aligned(text)
        assert normal == ours(text)
        assert len(source) == len(normal) and source == sorted(source)


def test_unicode_form_is_checked():
    from llmkit.tokenize.errors import TokenizerError

    with pytest.raises(TokenizerError, match="NFC, NFD, NFKC or NFKD"):
        UnicodeNormalizer("NFX")
    with pytest.raises(TokenizerError, match="always, first or never"):
        Metaspace(prepend_scheme="sometimes")


# -- Metaspace: prepend_scheme always / first / never, split, inside a whole tokenizer --------------


@pytest.fixture(scope="module")
def unigram_doc(real_text) -> dict:
    """A small Unigram trained by HF tokenizers on real text, with <s> as an added special token."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.Unigram())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=800, special_tokens=["<unk>", "<s>"], unk_token="<unk>", show_progress=False)
    hf.train_from_iterator([real_text["english"][:100_000]], trainer=trainer)
    return json.loads(hf.to_str())


@pytest.mark.parametrize("scheme", ["always", "first", "never"])
@pytest.mark.parametrize("split", [True, False])
def test_metaspace_schemes_equal_hf(unigram_doc, real_text, scheme, split):
    import json

    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import from_tokenizer_json

    doc = dict(unigram_doc)
    doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
    doc["decoder"] = dict(doc["pre_tokenizer"])
    hf, ours = Tokenizer.from_str(json.dumps(doc)), from_tokenizer_json(doc)
    texts = ["Hello world", " leading space", "<s>Hello", "Hello <s> world<s>again", "▁already", "a  b", ""]
    texts += real_text["english"][:20_000].splitlines()[:200]
    for text in texts:
        enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
        assert (enc.ids, enc.offsets) == (theirs.ids, theirs.offsets), text
        assert ours.encode(text) == theirs.ids
        assert ours.decode(enc.ids) == hf.decode(theirs.ids, skip_special_tokens=False), text
