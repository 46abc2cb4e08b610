"""Character-level tokenizer: ids and offsets equal to HF tokenizers' WordLevel over single characters;
vocabulary order equal to sentencepiece's char model."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenize.char import char_tokenizer, char_vocabulary
from llmkit.tokenize.errors import TokenizerError


def _hf_char(tok):
    """HF's character tokenizer: WordLevel over Split(any character, isolated), same vocabulary."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    hf = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tok.model.tokens)}, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")  # Oniguruma: (?m) lets . match \n
    hf.add_special_tokens([t for t in tok.model.tokens if len(t) > 1])
    return hf


@pytest.fixture(scope="module")
def english_chars(real_text):
    return char_tokenizer(char_vocabulary([real_text["english"]], coverage=0.999), ("<unk>", "<s>", "</s>"))


@pytest.mark.parametrize("family", ["english", "accented-latin", "cjk", "emoji", "code"])
def test_ids_and_offsets_equal_hf(english_chars, real_text, family):
    hf = _hf_char(english_chars)
    text = real_text[family][:20_000] + "<s>x</s>"
    enc, theirs = english_chars.encode_with_offsets(text), hf.encode(text)
    assert enc.ids == theirs.ids
    assert enc.offsets == theirs.offsets


def test_vocabulary_order_equals_sentencepiece_char_model(real_text):
    import sentencepiece as spm

    from llmkit.tokenize.train_unigram import normalize_sentence

    lines = real_text["accented-latin"][:200_000].splitlines()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="char", minloglevel=2,
                                   vocab_size=100_000, hard_vocab_limit=False, character_coverage=1.0)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    theirs = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    assert char_vocabulary(normalize_sentence(line) for line in lines) == theirs


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_decode_encode_round_trip_on_known_characters(text):
    tok = char_tokenizer(sorted(set(text)) + ["a"])
    assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_and_bad_vocabularies():
    tok = char_tokenizer("abc")
    assert tok.encode("abz") == [1, 2, 0]
    assert tok.decode(tok.encode("abz")) == "ab<unk>"
    with pytest.raises(TokenizerError, match="not one character"):
        char_tokenizer(["ab"])
    with pytest.raises(TokenizerError, match="coverage"):
        char_vocabulary(["x"], coverage=0)


def test_saved_vocab_is_plain_json_of_the_tokens(english_chars):
    assert json.loads(json.dumps(english_chars.model.vocab)) == english_chars.model.vocab
