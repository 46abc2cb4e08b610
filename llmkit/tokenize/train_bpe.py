"""BPE training (Sennrich et al. 2016), as HF tokenizers' ``BpeTrainer`` does it.

Count every adjacent symbol pair over the word counts once; then repeatedly merge the most
frequent pair, updating only the counts of the pairs next to each merge (incremental counts
and a priority queue, not a recount per merge)::

    words   low x5   lower x2   newest x6   widest x3
    pairs   es 9  st 9  we 8  lo 7  ow 7  ne 6  ew 6  wi 3 ...  -> merge (e, s), tied with (s, t)
    then    (es, t) 9 -> est;  (s, t) fell to 0, (w, es) rose to 6 - only these counts changed

Tie-breaking, which decides the merges list exactly: among pairs of equal count the one with
the smaller ``(left id, right id)`` wins (``Merge``'s ``Ord`` in ``trainer.rs``); ids are given
to special tokens first, then to the alphabet in code-point order, then to each new token in
merge order. A queued count that went stale is corrected and pushed back before it can win.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise

from llmkit.tokenize.byte_level import bytes_to_unicode, spell_bytes
from llmkit.tokenize.errors import TokenizerError

Pair = tuple[int, int]


@dataclass(frozen=True)
class BpeTrainerConfig:
    """HF ``BpeTrainer`` settings (byte-level: the initial alphabet is all 256 byte characters)."""

    vocab_size: int = 8000
    min_frequency: int = 0
    special_tokens: tuple[str, ...] = ()
    byte_level: bool = True
    pretokenizer: str = "gpt2"
    continuing_subword_prefix: str = ""  # "##" trains WordPiece (HF WordPieceTrainer is BpeTrainer with it)

    def __post_init__(self):
        if self.vocab_size < 1:
            raise TokenizerError(f"vocab_size must be positive, got {self.vocab_size}")


def train_bpe(
    word_counts: dict[str, int],
    config: BpeTrainerConfig,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """``(tokens, merges)`` learned from ``word_counts`` (words spelled in the symbol alphabet)."""
    prefix = config.continuing_subword_prefix
    tokens = list(dict.fromkeys(config.special_tokens))
    alphabet = set(bytes_to_unicode().values()) if config.byte_level else set()
    alphabet |= {c for w in word_counts for c in w}
    tokens += sorted(alphabet - set(tokens))
    if prefix:  # "##x" for characters inside words; HF adds them in hash order, here in code-point order
        inner = {prefix + c for w in word_counts for c in w[1:]}
        tokens += sorted(inner - set(tokens))
    ids = {t: i for i, t in enumerate(tokens)}
    words = [[ids[c if k == 0 else prefix + c] for k, c in enumerate(w)] for w in word_counts]
    counts = list(word_counts.values())
    pair_counts, where = count_pairs(words, counts)
    queue = [(-n, p) for p, n in pair_counts.items() if n > 0]
    heapq.heapify(queue)
    merges: list[tuple[str, str]] = []
    while len(tokens) < config.vocab_size and queue:
        neg, pair = heapq.heappop(queue)
        if -neg != pair_counts[pair]:  # stale: correct it and let the queue decide again
            heapq.heappush(queue, (-pair_counts[pair], pair))
            continue
        if -neg < 1 or config.min_frequency > -neg:
            break
        right = tokens[pair[1]]
        new = tokens[pair[0]] + (right[len(prefix) :] if prefix and right.startswith(prefix) else right)
        if new not in ids:
            ids[new] = len(tokens)
            tokens.append(new)
        merges.append((tokens[pair[0]], tokens[pair[1]]))
        _apply_merge(pair, ids[new], words, counts, pair_counts, where, queue)
        if progress:
            progress(len(tokens))
    return tokens, merges


def count_pairs(words: list[list[int]], counts: list[int]) -> tuple[dict[Pair, int], dict[Pair, set[int]]]:
    """Count of every adjacent pair (weighted by word count) and the words each pair occurs in."""
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, (word, n) in enumerate(zip(words, counts)):
        for pair in pairwise(word):
            pair_counts[pair] += n
            where[pair].add(i)
    return pair_counts, where


def _apply_merge(pair, new_id, words, counts, pair_counts, where, queue) -> None:
    """Merge ``pair`` in every word holding it; update neighbouring pair counts and queue the grown ones."""
    grown: dict[Pair, set[int]] = defaultdict(set)
    for i in where[pair]:
        for changed, delta in merge_word(words[i], pair, new_id):
            pair_counts[changed] = pair_counts.get(changed, 0) + delta * counts[i]
            if delta > 0:
                grown[changed].add(i)
    for changed, word_ids in grown.items():
        where[changed] |= word_ids
        if pair_counts[changed] > 0:
            heapq.heappush(queue, (-pair_counts[changed], changed))


def merge_word(word: list[int], pair: Pair, new_id: int) -> list[tuple[Pair, int]]:
    """Merge ``pair`` left to right in ``word`` (in place); the pair-count changes (HF ``Word::merge``)."""
    a, b = pair
    changes: list[tuple[Pair, int]] = []
    i = 0
    while i < len(word) - 1:
        if word[i] == a and word[i + 1] == b:
            if i > 0:
                changes += [((word[i - 1], a), -1), ((word[i - 1], new_id), 1)]
            word[i : i + 2] = [new_id]
            if i < len(word) - 1:
                changes += [((b, word[i + 1]), -1), ((new_id, word[i + 1]), 1)]
        i += 1
    return changes


def word_counts(texts: Iterable[str], pretokenizer: str = "gpt2", byte_level: bool = True, normalizer=None) -> dict[str, int]:
    """Pre-tokenized words of ``texts`` with their counts (spelled in GPT-2's byte alphabet if ``byte_level``)."""
    from llmkit.tokenize.pretokenize import get_pretokenizer, pretokenize

    pre = get_pretokenizer(pretokenizer)
    counter: Counter[str] = Counter()
    for text in texts:
        counter.update(pretokenize(pre, normalizer(text) if normalizer else text))
    if not byte_level:
        return dict(counter)
    return {spell_bytes(w.encode("utf-8")): n for w, n in counter.items()}


def train_byte_level_bpe(texts: Iterable[str], config: BpeTrainerConfig = BpeTrainerConfig(), progress=None):
    """A byte-level BPE :class:`Tokenizer` trained on ``texts`` (special tokens matched whole)."""
    from llmkit.tokenize.bpe import ByteLevelBPE
    from llmkit.tokenize.pretokenize import get_pretokenizer
    from llmkit.tokenize.special import AddedToken
    from llmkit.tokenize.tokenizer import Tokenizer

    tokens, merges = train_bpe(word_counts(texts, config.pretokenizer), config, progress)
    added = [AddedToken(t, i) for i, t in enumerate(dict.fromkeys(config.special_tokens))]
    return Tokenizer(ByteLevelBPE(tokens, merges), get_pretokenizer(config.pretokenizer), added)


def train_wordpiece(texts: Iterable[str], vocab_size: int = 30000, special_tokens: tuple[str, ...] = (
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), min_frequency: int = 0):  # fmt: skip
    """A BERT WordPiece :class:`Tokenizer` trained as HF's WordPieceTrainer does: BPE with ``##`` continuations."""
    from llmkit.tokenize.normalize import BertNormalizer
    from llmkit.tokenize.pretokenize import PRETOKENIZERS
    from llmkit.tokenize.special import AddedToken
    from llmkit.tokenize.tokenizer import PostProcessor, Tokenizer
    from llmkit.tokenize.wordpiece import WordPiece

    config = BpeTrainerConfig(vocab_size, min_frequency, special_tokens, False, "bert", "##")
    normalizer = BertNormalizer()
    tokens, _ = train_bpe(word_counts(texts, "bert", byte_level=False, normalizer=normalizer), config)
    model = WordPiece(tokens)
    added = [AddedToken(t, model.vocab[t]) for t in special_tokens]
    has = {t: model.vocab.get(t) for t in ("[CLS]", "[SEP]")}
    post = PostProcessor((has["[CLS]"],), (has["[SEP]"],)) if None not in has.values() else PostProcessor()
    return Tokenizer(model, PRETOKENIZERS["bert"], added, post, "wordpiece", normalizer=normalizer)
