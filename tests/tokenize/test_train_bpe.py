"""BPE training: the merges list equal to HF tokenizers' BpeTrainer's, tie-breaking included."""

from __future__ import annotations

import pytest

from llmkit.tokenize.train_bpe import (
    BpeTrainerConfig,
    merge_word,
    train_bpe,
    train_byte_level_bpe,
    word_counts,
)


def hf_train(texts: list[str], config: BpeTrainerConfig, byte_level: bool = True):
    """HF tokenizers' BpeTrainer with the same settings: (tokenizer, tokens, merges)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True) if byte_level else pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(config.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [],
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    model = json.loads(hf.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    return hf, tokens, [tuple(m) for m in model["merges"]]


def test_hand_worked_example_and_tie_break():
    """(e, s) and (s, t) both count 9: the pair of smaller ids, (e, s), merges first; then (es, t)."""
    words = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
    tokens, merges = train_bpe(words, BpeTrainerConfig(vocab_size=10 + 4, byte_level=False))
    assert merges == [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w")]
    assert tokens[:10] == sorted("lowernstid")  # the alphabet in code-point order, then merges
    _, hf_tokens, hf_merges = hf_train([" ".join([w] * n) for w, n in words.items()], BpeTrainerConfig(14), byte_level=False)
    assert (tokens, merges) == (hf_tokens, hf_merges)


def test_merge_word_reports_neighbour_changes():
    word = [1, 2, 2, 2, 3]  # a b b b c, merge (b, b) -> 9: leftmost, non-overlapping
    changes = merge_word(word, (2, 2), 9)
    assert word == [1, 9, 2, 3]
    assert changes == [((1, 2), -1), ((1, 9), 1), ((2, 2), -1), ((9, 2), 1)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        BpeTrainerConfig(vocab_size=3000),
        BpeTrainerConfig(vocab_size=1500, min_frequency=5, special_tokens=("<|endoftext|>", "<pad>")),
    ],
    ids=["3000", "1500-minfreq5-specials"],
)
def test_merges_equal_hf_bpe_trainer_on_real_text(real_text, config):
    texts = [real_text["english"][:200_000], real_text["code"][:200_000], real_text["cyrillic"][:100_000]]
    tokens, merges = train_bpe(word_counts(texts), config)
    _, hf_tokens, hf_merges = hf_train(texts, config)
    assert merges == hf_merges
    assert tokens == hf_tokens


def test_trained_tokenizer_encodes_like_hf(real_text):
    texts = [real_text["english"][:100_000]]
    config = BpeTrainerConfig(vocab_size=800, special_tokens=("<|endoftext|>",))
    ours = train_byte_level_bpe(texts, config)
    hf, _, _ = hf_train(texts, config)
    sample = real_text["code"][:20_000] + "<|endoftext|>" + real_text["accented-latin"][:5_000]
    assert ours.encode(sample) == hf.encode(sample).ids
    assert ours.decode(ours.encode(sample)) == sample


def test_wordpiece_vocab_matches_hf_wordpiece_trainer(real_text):
    """HF's WordPieceTrainer numbers '##' characters in hash order, so its own runs differ by ~0.5%
    of the vocabulary; ours numbers them in code-point order and must share >= 99% with any HF run."""
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from llmkit.tokenize.train_bpe import train_wordpiece

    texts = [real_text["english"][:300_000], real_text["accented-latin"][:100_000]]
    hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.normalizer, hf.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    hf.train_from_iterator(texts, trainer=trainers.WordPieceTrainer(vocab_size=3000, special_tokens=specials, show_progress=False))
    theirs = set(json.loads(hf.to_str())["model"]["vocab"])
    ours = train_wordpiece(texts, 3000)
    assert len(ours.model.tokens) == len(theirs) == 3000
    assert len(theirs & set(ours.model.tokens)) >= 0.99 * 3000
    text = real_text["english"][300_000:320_000]
    hf_same_vocab = Tokenizer(models.WordPiece({t: i for i, t in enumerate(ours.model.tokens)}, unk_token="[UNK]"))
    hf_same_vocab.normalizer, hf_same_vocab.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
    assert ours.encode(text, add_special=False) == hf_same_vocab.encode(text).ids
