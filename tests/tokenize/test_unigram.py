"""Unigram: a model HF tokenizers trained, loaded from its tokenizer.json, segments exactly as HF does."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
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


# -- n-best and sampling (subword regularisation, Kudo 2018) --------------------------------------


@pytest.fixture(scope="module")
def spm_unigram(real_text):
    """A 2000-piece sentencepiece Unigram trained on real English, and the same vocabulary in our Unigram."""
    import io

    import sentencepiece as spm

    lines = real_text["english"][:300_000].splitlines()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="unigram",
                                   vocab_size=2000, num_threads=1, minloglevel=2)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    pieces = [(p if not sp.is_control(i) else f"\0control{i}", s) for i, (p, s) in enumerate(pieces)]  # never in text
    return sp, Unigram(pieces, unk_id=sp.unk_id())


def _score(model: Unigram, pieces: tuple[str, ...]) -> float:
    return sum(model.unk_score if p == model.tokens[model.unk_id] else model.scores[model.vocab[p]] for p in pieces)


def _tie_groups(cuts: list[tuple[str, ...]], scores: list[float]) -> list[tuple[float, frozenset]]:
    """The n-best as (score, set of cuts) groups: equal scores may come in either order; the last group may be cut off."""
    groups: dict[float, set] = {}
    for cut, score in zip(cuts, scores):
        groups.setdefault(round(score, 4), set()).add(cut)
    return [(s, frozenset(c)) for s, c in groups.items()][:-1] + [(list(groups)[-1], None)] if groups else []


def test_nbest_equals_sentencepiece(spm_unigram, real_text):
    from llmkit.tokenize.train_unigram import normalize_sentence

    sp, ours = spm_unigram
    texts = [" ".join(line.split()[:4]) for line in real_text["english"].splitlines()[5000:5300]]
    texts += ["unbelievably", "antidisestablishmentarianism", "Hello world"]
    compared = 0
    for text in filter(None, texts):
        unk = ours.tokens[ours.unk_id]  # sentencepiece shows an unknown piece as its text
        theirs = [tuple(p if p in ours.vocab else unk for p in cut) for cut in sp.nbest_encode_as_pieces(text, 8)]
        cuts = ours.nbest(normalize_sentence(text), 8)
        mine = [tuple(ours.tokens[i] for i in ids) for ids, _ in cuts]
        assert _tie_groups(mine, [s for _, s in cuts]) == _tie_groups(theirs, [_score(ours, p) for p in theirs]), text
        compared += 1
    assert compared > 250


def test_nbest_scores_are_path_sums_in_order():
    pieces = [("<unk>", 0.0), ("a", -1.0), ("b", -1.1), ("ab", -1.5), ("abb", -2.5), ("bb", -1.2)]
    model = Unigram(pieces, unk_id=0)
    cuts = model.nbest("abb", 100)
    assert len(cuts) == 4  # a|bb, abb, ab|b, a|b|b
    assert [s for _, s in cuts] == sorted((s for _, s in cuts), reverse=True)
    for ids, score in cuts:
        assert score == pytest.approx(sum(model.scores[i] for i in ids))
        assert "".join(model.tokens[i] for i in ids) == "abb"
    assert cuts[0][0] == model.encode_piece("abb")


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_sampling_matches_the_exact_distribution(alpha):
    """20,000 draws over all cuts of a word vs p(cut) ∝ exp(alpha * score), enumerated exactly; chi-square."""
    from scipy.stats import chisquare

    pieces = [("<unk>", 0.0), ("▁", -2.0), ("h", -3.0), ("e", -2.5), ("l", -2.6), ("o", -2.7), ("▁h", -3.1),
              ("he", -3.3), ("ll", -3.4), ("lo", -3.5), ("hel", -4.0), ("llo", -4.2), ("▁hello", -6.5), ("ello", -4.8)]  # fmt: skip
    model = Unigram(pieces, unk_id=0)
    cuts = model.nbest("▁hello", 10_000)  # every segmentation
    weights = np.exp(alpha * np.array([s for _, s in cuts]))
    expected = weights / weights.sum()
    index = {ids: k for k, (ids, _) in enumerate(cuts)}
    rng = random.Random(0)
    n = 20_000
    observed = np.zeros(len(cuts))
    for _ in range(n):
        observed[index[model.sample("▁hello", alpha, -1, rng)]] += 1
    assert chisquare(observed, expected * n).pvalue > 0.001


def test_sampling_from_the_nbest():
    pieces = [("<unk>", 0.0), ("a", -1.0), ("b", -1.1), ("ab", -1.5), ("abb", -2.5), ("bb", -1.2)]
    model = Unigram(pieces, unk_id=0)
    top3 = {ids for ids, _ in model.nbest("abb", 3)}
    rng = random.Random(1)
    drawn = Counter(model.sample("abb", 1.0, 3, rng) for _ in range(3000))
    assert set(drawn) == top3
    assert model.sample("abb", 1.0, 1, rng) == model.encode_piece("abb")
