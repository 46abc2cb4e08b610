"""WordPiece on all-MiniLM-L6-v2's real vocabulary: ids, tokens and offsets equal to HF tokenizers."""

from __future__ import annotations

import pytest

from llmkit.tokenize.files import load_vocab_txt
from llmkit.tokenize.wordpiece import WordPiece, wordpiece_decode

FAMILIES = ["english", "code", "accented-latin", "cjk", "cyrillic", "arabic", "emoji"]


def _first_difference(ours: list, theirs: list) -> str:
    i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return f"first difference at {i}: ours {ours[i:i + 5]} vs HF {theirs[i:i + 5]}"


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_ids_equal_hf_on_real_text(minilm, hf_minilm, real_text, family):
    text = real_text[family]
    ours, theirs = minilm.encode(text), hf_minilm.encode(text).ids
    assert ours == theirs, _first_difference(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_offsets_equal_hf_on_real_text(minilm, hf_minilm, real_text, family):
    text = real_text[family][:150_000]
    ours, theirs = minilm.encode_with_offsets(text), hf_minilm.encode(text)
    assert ours.ids == theirs.ids, _first_difference(ours.ids, theirs.ids)
    assert ours.tokens == theirs.tokens
    assert ours.offsets == theirs.offsets, _first_difference(ours.offsets, theirs.offsets)


EDGE_CASES = [
    "",
    "   \t\n ",
    "[CLS] already [SEP] and [MASK]ed [UNK]",
    "Σίσυφος ΟΔΥΣΣΕΥΣ",  # Greek capital sigma lowercases to σ everywhere (no final-sigma rule)
    "İstanbul ǅ ß ﬁ Ⅻ",  # lowercasing that changes length
    "naïve café e\u0301 Å",  # accents stripped
    "中文字符和日本語、한국어",  # CJK ideographs split one by one, Hangul not
    "x" * 100 + " " + "y" * 101,  # max_input_chars_per_word = 100: the second is [UNK]
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "a\x00b\ufffdc\u200bd\u200de\x85f\ue000g",  # clean-up: removed controls / formats / private use
    "$100+50<=>^`|~ don't ... !?",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_equal_hf(minilm, hf_minilm, text):
    ours, theirs = minilm.encode_with_offsets(text), hf_minilm.encode(text)
    assert (ours.ids, ours.tokens, ours.offsets) == (theirs.ids, theirs.tokens, theirs.offsets)
    assert minilm.encode(text) == theirs.ids


@pytest.mark.parametrize("skip", [False, True])
def test_decode_equals_hf(minilm, hf_minilm, real_text, skip):
    for text in [*EDGE_CASES, real_text["english"][:20_000], "I 'm sure they 've said do not ."]:
        ids = minilm.encode(text)
        assert minilm.decode(ids, skip_special=skip) == hf_minilm.decode(ids, skip_special_tokens=skip)


def test_no_special_leaves_out_cls_sep(minilm, hf_minilm):
    assert minilm.encode("hello world", add_special=False) == hf_minilm.encode("hello world", add_special_tokens=False).ids


@pytest.mark.slow
def test_vocab_txt_equals_hf_bert_wordpiece(minilm_dir, real_text):
    from tokenizers import BertWordPieceTokenizer

    ours = load_vocab_txt(minilm_dir / "vocab.txt")
    theirs = BertWordPieceTokenizer(str(minilm_dir / "vocab.txt"), lowercase=True)
    for family in ("english", "accented-latin", "cjk"):
        text = real_text[family][:300_000]
        assert ours.encode(text) == theirs.encode(text).ids


def test_greedy_longest_match_first():
    wp = WordPiece(["[UNK]", "un", "una", "##ff", "##ffa", "##able", "##ble", "##a"])
    assert [wp.tokens[i] for i in wp.encode_piece("unaffable")] == ["una", "##ffa", "##ble"]
    assert wp.encode_piece("unx") == (0,)  # no cut: the whole word is [UNK]
    assert wordpiece_decode(["una", "##ffa", "##ble", "!"]) == "unaffable!"
