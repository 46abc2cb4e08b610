"""Unigram trainer: pieces and compression close to sentencepiece's unigram trainer on real text; EM parts exact."""

from __future__ import annotations

import io
import math
import time
from collections import Counter

import numpy as np
import pytest

from llmkit.tokenize.train_unigram import (
    Lattices,
    UnigramTrainerConfig,
    digamma,
    e_step,
    normalize_sentence,
    train_unigram,
)


def _split(real_text, megabytes: float) -> tuple[list[str], list[str]]:
    """English + accented-Latin lines (real gettext text): every 10th line held out."""
    lines = [l for fam in ("english", "accented-latin") for l in real_text[fam].splitlines() if l.strip()]
    train, held, size = [], [], 0
    for i, line in enumerate(lines):
        (held if i % 10 == 0 else train).append(line)
        size += len(line.encode("utf-8"))
        if size > megabytes * 1e6:
            break
    return train, held


@pytest.fixture(scope="module")
def trained(real_text):
    """sentencepiece's and our 8k Unigram on the same ~1 MB, with their training times."""
    import sentencepiece as spm

    train, held = _split(real_text, 1.0)
    start = time.perf_counter()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(train), model_writer=buf, model_type="unigram",
                                   vocab_size=8000, num_threads=1, minloglevel=2)  # fmt: skip
    spm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = train_unigram(train, UnigramTrainerConfig(vocab_size=8000))
    our_seconds = time.perf_counter() - start
    print(f"\nUnigram 8k on {sum(map(len, train)) / 1e6:.2f} M chars: sentencepiece {spm_seconds:.1f} s, llmkit {our_seconds:.1f} s")
    return spm.SentencePieceProcessor(model_proto=buf.getvalue()), ours, held


def test_shares_95_percent_of_pieces_with_sentencepiece(trained):
    sp, ours, _ = trained
    theirs = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    assert ours.vocab_size == sp.get_piece_size() == 8000
    shared = len(theirs & set(ours.model.tokens)) / len(theirs)
    print(f"shared pieces: {shared:.4f}")
    assert shared >= 0.95


def test_compression_within_1_percent_of_sentencepiece(trained):
    sp, ours, held = trained
    texts = [" ".join(t.split()) for t in held]  # sentencepiece collapses whitespace runs; give both the same text
    n_chars = sum(map(len, texts))
    theirs = sum(len(ids) for ids in sp.encode(texts)) / n_chars
    mine = sum(len(ours.encode(t, add_special=False)) for t in texts) / n_chars
    print(f"tokens per character on held-out text: sentencepiece {theirs:.4f}, llmkit {mine:.4f}")
    assert abs(mine / theirs - 1) <= 0.01


def test_scores_are_log_probabilities_like_sentencepiece(trained):
    """Scores of shared pieces agree closely (both are digamma-EM log-probabilities)."""
    sp, ours, _ = trained
    theirs = {sp.id_to_piece(i): sp.get_score(i) for i in range(3, sp.get_piece_size())}
    pairs = [(s, theirs[p]) for p, s in zip(ours.model.tokens, ours.model.scores) if p in theirs and s != 0.0]
    a, b = np.array(pairs).T
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_loads_in_hf_tokenizers_with_the_same_ids(trained, tmp_path):
    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import save_tokenizer_json

    _, ours, held = trained
    save_tokenizer_json(ours, tmp_path / "unigram.json")
    hf = Tokenizer.from_file(str(tmp_path / "unigram.json"))
    for text in held[:500]:
        assert ours.encode(text, add_special=False) == hf.encode(text, add_special_tokens=False).ids


def test_digamma_equals_scipy():
    from scipy.special import digamma as scipy_digamma

    for x in [0.5, 0.7, 1.0, 2.5, 6.9, 7.0, 12.0, 1e3, 1e6]:
        assert digamma(x) == pytest.approx(float(scipy_digamma(x)), rel=1e-9, abs=1e-9)


def _segmentations(text: str, vocab: set[str]):
    """Every way to cut ``text`` into vocabulary pieces (brute force)."""
    if not text:
        yield ()
        return
    for k in range(1, len(text) + 1):
        if text[:k] in vocab:
            for rest in _segmentations(text[k:], vocab):
                yield (text[:k], *rest)


def test_expected_counts_equal_brute_force_enumeration():
    """E-step: expected piece counts = sum over all cuts of p(cut) x occurrences, p ∝ exp(sum of scores)."""
    pieces = ["▁", "a", "b", "c", "▁a", "ab", "bc", "abc", "▁ab", "ca"]
    scores = np.log(np.array([3, 5, 4, 2, 2, 3, 1, 1, 1, 1], dtype=float) / 23)
    words, counts = ["▁abc", "▁cab", "abca", "▁a"], np.array([3.0, 1.0, 2.0, 5.0])
    lattices = Lattices(words, {p: i for i, p in enumerate(pieces)}, max_len=4)
    expected, objective = e_step(lattices, scores, counts)
    want = np.zeros(len(pieces))
    log_likelihood = 0.0
    for w, n in zip(words, counts):
        cuts = list(_segmentations(w, set(pieces)))
        weights = [math.exp(sum(scores[pieces.index(p)] for p in cut)) for cut in cuts]
        z = sum(weights)
        log_likelihood += n * math.log(z)
        for cut, weight in zip(cuts, weights):
            for p in cut:
                want[pieces.index(p)] += n * weight / z
    np.testing.assert_allclose(expected, want, rtol=1e-10)
    assert objective == pytest.approx(-log_likelihood / counts.sum())


def test_viterbi_equals_brute_force():
    pieces = ["▁", "a", "b", "c", "▁a", "ab", "bc", "abc", "▁ab", "ca"]
    scores = np.array([-1.0, -1.2, -1.1, -2.0, -1.5, -1.9, -2.5, -2.4, -2.2, -1.75])
    words = ["▁abc", "▁cab", "abca", "▁a", "▁abcabca"]
    lattices = Lattices(words, {p: i for i, p in enumerate(pieces)}, max_len=4)
    text, piece, best = lattices.viterbi(lattices.node_scores(scores))
    for w, word in enumerate(words):
        top = max(_segmentations(word, set(pieces)), key=lambda cut: sum(scores[pieces.index(p)] for p in cut))
        assert sorted(pieces[p] for p in piece[text == w]) == sorted(top)
        assert best[w] == pytest.approx(sum(scores[pieces.index(p)] for p in top))


def test_normalize_sentence_like_sentencepiece(real_text):
    """NFKC, whitespace runs collapsed, ▁ before each word: sentencepiece's default (nmt_nfkc) on real text."""
    import sentencepiece as spm

    buf = io.BytesIO()
    lines = ["the cat sat on the mat", "a dog ran"] * 50
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="char", minloglevel=2,
                                   vocab_size=40, hard_vocab_limit=False)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    texts = ["  ｆｕｌｌ width  and   spaces ", "ｱ ① ﬁ", "a\tb\nc", "", "bell\x07 and\x7f del"]
    texts += [t for fam in ("english", "accented-latin", "cyrillic", "cjk") for t in real_text[fam].splitlines()[:300]]
    for text in texts:
        assert normalize_sentence(text) == sp.normalize(text)


def test_required_characters_keep_coverage():
    from llmkit.tokenize.train_unigram import required_chars

    sentences = Counter({"▁aaaaaaaaab": 100, "▁c": 1})
    chars = required_chars(sentences, 0.9995)
    assert set(chars) == {"▁", "a", "b", "c"}
    assert "c" not in required_chars(sentences, 0.99)


def test_bad_settings_are_clear_errors():
    from llmkit.tokenize.errors import TokenizerError

    with pytest.raises(TokenizerError, match="shrinking_factor"):
        UnigramTrainerConfig(shrinking_factor=0.3)
    with pytest.raises(TokenizerError, match="required characters"):
        train_unigram(["abcdefghij klmnop"], UnigramTrainerConfig(vocab_size=8))
    with pytest.raises(TokenizerError, match="no text"):
        train_unigram(["", "   "])


def test_byte_fallback_pieces_encode_unseen_characters_like_hf(real_text, tmp_path):
    """With byte_fallback the 256 <0xXX> pieces follow the specials; an unseen character becomes its UTF-8 bytes."""
    from tokenizers import Tokenizer

    from llmkit.tokenize.tokenizer_json import save_tokenizer_json

    lines = real_text["english"][:60_000].splitlines()
    ours = train_unigram(lines, UnigramTrainerConfig(vocab_size=600, byte_fallback=True))
    assert ours.model.tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)]
    assert ours.vocab_size == 600
    save_tokenizer_json(ours, tmp_path / "bf.json")
    hf = Tokenizer.from_file(str(tmp_path / "bf.json"))
    for text in ["Cannot open 日本語 file ☃", "naïve café", real_text["cjk"][:200]]:
        ids = ours.encode(text, add_special=False)
        assert ids == hf.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids) == hf.decode(ids) == text


def test_valid_lengths_fast_path_equals_reference(real_text):
    """One right-to-left pass gives the same longest valid piece at every start as the readable scan."""
    from llmkit.tokenize.train_unigram import valid_lengths, valid_prefix_length

    texts = ["▁a\u0301b▁日本▁カタカナー漢字▁x1▁" + "\u2585" + "▁\u0301a▁ab", "▁" * 5, ""]
    texts += [normalize_sentence(t) for fam in ("english", "cjk", "arabic", "emoji", "code") for t in real_text[fam][:5000].splitlines()]
    for text in texts:
        for max_length in (4, 16):
            assert valid_lengths(text, max_length) == [valid_prefix_length(text, s, max_length) for s in range(len(text))]
