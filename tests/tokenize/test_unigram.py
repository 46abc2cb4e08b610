"""Unigram: a model HF tokenizers trained, loaded from its tokenizer.json, segments exactly as HF does."""

from __future__ import annotations

import json
import random

import pytest

from llmkit.tokenize.tokenizer_json import load_tokenizer_json, serde_json_f64
from llmkit.tokenize.unigram import UNK_PENALTY, Unigram

FAMILIES = ["english", "code", "accented-latin", "cjk", "cyrillic", "arabic", "emoji"]


@pytest.fixture(scope="module")
def unigram_json(real_text, tmp_path_factory):
    """A 3000-piece Unigram trained by HF's UnigramTrainer on real text, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.Unigram())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=3000, special_tokens=["<unk>", "<s>"], unk_token="<unk>", show_progress=False)
    hf.train_from_iterator([real_text["english"][:200_000], real_text["accented-latin"][:100_000],
                            real_text["cyrillic"][:50_000]], trainer=trainer)  # fmt: skip
    path = tmp_path_factory.mktemp("unigram") / "tokenizer.json"
    hf.save(str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_segments_like_hf_on_real_text(unigram_json, real_text, family):
    from tokenizers import Tokenizer

    hf, ours = Tokenizer.from_file(str(unigram_json)), load_tokenizer_json(unigram_json)
    text = real_text[family][:100_000]
    enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
    assert enc.ids == theirs.ids
    assert enc.offsets == theirs.offsets
    assert ours.decode(enc.ids) == hf.decode(theirs.ids, skip_special_tokens=False)


@pytest.mark.parametrize("text", ["", " ", "  Hello  world ", "a\u2581b", "日本語 and more 日本", "lead"])
def test_edge_cases_like_hf(unigram_json, text):
    from tokenizers import Tokenizer

    hf, ours = Tokenizer.from_file(str(unigram_json)), load_tokenizer_json(unigram_json)
    enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
    assert (enc.ids, enc.offsets) == (theirs.ids, theirs.offsets)


def test_viterbi_hand_worked():
    """'ab': a+b scores -1 + -1 = -2 beats ab = -3; with ab = -1.5 the single piece wins."""
    pieces = [("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("ab", -3.0)]
    assert Unigram(pieces, unk_id=0).encode_piece("ab") == (1, 2)
    pieces[3] = ("ab", -1.5)
    assert Unigram(pieces, unk_id=0).encode_piece("ab") == (3,)
    model = Unigram(pieces, unk_id=0)
    assert model.unk_score == -1.5 - UNK_PENALTY
    assert model.encode_piece("xyab") == (0, 3)  # unknown characters fuse into one <unk>


def test_byte_fallback_like_hf():
    from tokenizers import Tokenizer, models

    pieces = [("<unk>", 0.0), ("a", -1.0), ("é", -2.0)] + [(f"<0x{b:02X}>", -5.0) for b in range(256)]
    ours, hf = Unigram(pieces, unk_id=0, byte_fallback=True), Tokenizer(models.Unigram(pieces, 0, True))
    for text in ["aé", "a日a", "ab"]:
        assert list(ours.encode_piece(text)) == hf.encode(text).ids


def test_serde_json_float_parsing_equals_hf(tmp_path):
    """HF's reader (serde_json) can be 1 ulp off Python's float; serde_json_f64 reproduces it."""
    from tokenizers import Tokenizer

    rng = random.Random(0)
    texts = [repr(-rng.uniform(0, 20)) for _ in range(2000)] + ["-1e-05", "-12.5", "-0.0001234567890123456"]
    pieces = [["<unk>", 0.0]] + [[f"p{i}", 0.0] for i in range(len(texts))]
    doc = json.dumps({"model": {"type": "Unigram", "unk_id": 0, "vocab": pieces}})
    for i, t in enumerate(texts):
        doc = doc.replace(f'["p{i}", 0.0]', f'["p{i}", {t}]', 1)
    (tmp_path / "t.json").write_text(doc)
    hf_scores = [s for _, s in json.loads(Tokenizer.from_file(str(tmp_path / "t.json")).to_str())["model"]["vocab"][1:]]
    assert [serde_json_f64(t) for t in texts] == hf_scores
    assert sum(float(t) != s for t, s in zip(texts, hf_scores)) > 0  # the difference is real


def test_saved_unigram_loads_in_hf(unigram_json, real_text, tmp_path):
    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import save_tokenizer_json

    save_tokenizer_json(load_tokenizer_json(unigram_json), tmp_path / "again.json")
    hf, ours = Tokenizer.from_file(str(tmp_path / "again.json")), load_tokenizer_json(tmp_path / "again.json")
    text = real_text["english"][:50_000]
    assert ours.encode(text) == hf.encode(text).ids == Tokenizer.from_file(str(unigram_json)).encode(text).ids
