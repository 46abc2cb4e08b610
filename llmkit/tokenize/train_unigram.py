"""Unigram training (Kudo 2018), as SentencePiece's ``unigram_model_trainer.cc`` does it.

    sentences --NFKC, spaces -> ▁--> words with counts      "▁the" x912  "▁cat" x3 ...
    seed      every character + the 1M substrings with the highest freq x length
    repeat    2 x EM:  E: expected count of each piece (forward-backward over each word's lattice)
                       M: score = digamma(count) - digamma(total)   (Bayesian EM; count < 0.5 dropped)
              prune:   keep the shrinking_factor (0.75) share of pieces whose removal loses the most
                       likelihood (a removed piece's count goes to its second-best segmentation)
    until     pieces <= 1.1 x vocab_size; then required characters + best-scored pieces

The lattices of all words are flat numpy arrays (one node = start, end, piece), so forward,
backward and Viterbi run as one vectorised step per (end position, piece length) instead of a
Python loop per node. Seeds come from a substring counter over the words (a substring must occur
at least twice and be followed by two different characters: SentencePiece's suffix-array nodes).
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
import regex

from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.unigram import piece_trie

SPACE = "\u2581"  # SentencePiece's whitespace marker
UNK_CHAR = "\u2585"  # stands for a character outside the required set
UNK_PENALTY = 10.0


@dataclass(frozen=True)
class UnigramTrainerConfig:
    """SentencePiece ``--model_type=unigram`` settings (its defaults)."""

    vocab_size: int = 8000
    character_coverage: float = 0.9995
    max_piece_length: int = 16
    seed_size: int = 1_000_000
    shrinking_factor: float = 0.75
    num_sub_iterations: int = 2
    max_sentence_bytes: int = 4192  # longer sentences are skipped, as SentencePiece does
    special_tokens: tuple[str, ...] = ("<unk>", "<s>", "</s>")
    byte_fallback: bool = False

    def __post_init__(self):
        if not 0.98 <= self.character_coverage <= 1.0:
            raise TokenizerError(f"character_coverage must be in [0.98, 1], got {self.character_coverage}")
        if not 0.5 <= self.shrinking_factor <= 0.95:
            raise TokenizerError(f"shrinking_factor must be in [0.5, 0.95], got {self.shrinking_factor}")
        if self.vocab_size <= len(self.special_tokens) + 256 * self.byte_fallback:
            raise TokenizerError(f"vocab_size {self.vocab_size} leaves no room for pieces after the special tokens")


# -- sentences -> words ---------------------------------------------------------------------------

_SPACES = regex.compile(r"\s+")
_CONTROL = regex.compile(r"[\p{Cc}--\s]", regex.V1)  # nmt_nfkc drops control characters other than whitespace


def normalize_sentence(text: str) -> str:
    """SentencePiece's default text normal form (nmt_nfkc): NFKC, controls dropped, ``▁`` before each word."""
    words = _SPACES.split(_CONTROL.sub("", unicodedata.normalize("NFKC", text)).strip())
    return "".join(SPACE + w for w in words if w)


def required_chars(sentences: Counter[str], coverage: float) -> dict[str, int]:
    """The most frequent characters covering ``coverage`` of all character occurrences (with counts)."""
    counts: Counter[str] = Counter()
    for s, n in sentences.items():
        for c, k in Counter(s).items():
            counts[c] += k * n
    total, covered, out = sum(counts.values()), 0, {}
    for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if covered / total >= coverage:
            break
        covered += n
        out[c] = n
    return out


def _mark_unknown(sentences: Counter[str], keep: dict[str, int]) -> Counter[str]:
    """Sentences with every character outside ``keep`` replaced by ``▅``."""
    out: Counter[str] = Counter()
    for s, n in sentences.items():
        out["".join(c if c in keep else UNK_CHAR for c in s) if any(c not in keep for c in s) else s] += n
    return out


def split_words(sentences: Counter[str]) -> Counter[str]:
    """Words (each starting with ``▁``) with their counts."""
    words: Counter[str] = Counter()
    for s, n in sentences.items():
        for w in s.split(SPACE)[1:]:
            words[SPACE + w] += n
    return words


# -- seed pieces -----------------------------------------------------------------------------------

_SCRIPTS = ["Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Syriac", "Thaana", "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao", "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic", "Cherokee", "Khmer", "Mongolian", "Han", "Yi", "Common", "Inherited"]  # fmt: skip
_SCRIPT_RE = regex.compile("|".join(rf"(?P<{s}>\p{{Script={s}}})" for s in _SCRIPTS) + r"|(?P<Hiragana>\p{Script=Hiragana})|(?P<Katakana>\p{Script=Katakana})")


@cache
def script(c: str) -> str:
    """Unicode script of ``c`` as SentencePiece groups them (Hiragana, Katakana and ー count as Han)."""
    m = _SCRIPT_RE.fullmatch(c)
    name = m.lastgroup if m else "Other"
    return "Han" if name in ("Hiragana", "Katakana") or c == "\u30fc" else name


def valid_prefix_length(word: str, start: int, max_length: int) -> int:
    """Longest ``k`` such that ``word[start:start+k]`` is a valid piece (no inner ``▁``, no ``▅`` or NUL, one script)."""
    prev = None
    for k in range(max_length):
        if start + k >= len(word):
            return k
        c = word[start + k]
        if c in (UNK_CHAR, "\0") or (c == SPACE and k > 0):
            return k
        if c != SPACE:
            s = script(c)
            s = prev if s == "Inherited" else s
            if s is not None and prev is not None and s != prev:
                return k
            prev = s
    return max_length


def valid_lengths(text: str, max_length: int) -> list[int]:
    """:func:`valid_prefix_length` at every start of ``text`` in one right-to-left pass (the fast path)."""
    n = len(text)
    normal = [c not in (SPACE, UNK_CHAR, "\0") for c in text] + [False]
    own = [None if not ok or (sc := script(c)) == "Inherited" else sc for c, ok in zip(text, normal)] + [None]
    run, first, lead = [0] * (n + 1), [None] * (n + 1), [0] * (n + 1)  # from i: run length, its script, inherited lead
    for i in range(n - 1, -1, -1):
        if not normal[i]:
            continue
        first[i] = own[i] or first[i + 1]
        lead[i] = 1 + lead[i + 1] if own[i] is None else 0
        agree = own[i] is None or first[i + 1] is None or first[i + 1] == own[i]
        run[i] = 1 + (run[i + 1] if agree else lead[i + 1])
    out = [min(max_length, run[i] if normal[i] else (1 + run[i + 1] if text[i] == SPACE else 0)) for i in range(n)]
    return out


def seed_pieces(sentences: Counter[str], config: UnigramTrainerConfig) -> list[tuple[str, float]]:
    """Every character, then the ``seed_size`` repeated substrings with the highest ``freq * length``; log-probs.

    A substring is a seed when it occurs twice or more and is followed by two different characters
    (or a sentence end, ``\\0``): the internal nodes of SentencePiece's suffix tree over the sentences.
    Counted as all valid substrings plus their one-character extensions; a substring's distinct
    extensions are its followers.
    """
    grams: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for text, n in sentences.items():
        padded = text + "\0"
        limits = valid_lengths(text, config.max_piece_length)
        found = (padded[s : s + j] for s, lim in enumerate(limits) if lim > 1 for j in range(2, lim + 2))
        if n == 1:  # Counter.update of an iterable counts in C
            chars.update(text)
            grams.update(found)
        else:
            chars.update({k: v * n for k, v in Counter(text).items()})
            grams.update({k: v * n for k, v in Counter(found).items()})
    followers = Counter(g[:-1] for g in grams if len(g) > 2)
    chars.pop(UNK_CHAR, None)
    max_len = config.max_piece_length
    repeated = [(f * len(p), p) for p, f in grams.items()
                if f >= 2 and followers[p] >= 2 and valid_prefix_length(p, 0, max_len) == len(p)]  # fmt: skip
    repeated.sort(key=lambda sp: (-sp[0], sp[1]))
    pieces = sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))
    pieces += [(p, float(score)) for score, p in repeated[: config.seed_size]]
    logsum = math.log(sum(s for _, s in pieces))
    return [(p, math.log(s) - logsum) for p, s in pieces]


# -- the lattices of many strings as flat arrays -----------------------------------------------------


class Lattices:
    """All segmentation lattices of ``texts`` as arrays: node ``j`` spans ``[start[j], end[j])`` of the flat positions.

    Text ``w`` owns positions ``offset[w] .. offset[w] + len(w)``. A character no piece covers gets an
    unknown node (piece ``-1``) scored ``min(score) - 10``, as SentencePiece's lattice does.
    """

    def __init__(self, texts: list[str], vocab: dict[str, int], max_len: int, exclude_whole: bool = False):
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        vocab_ids = list(vocab.values())
        self.offset = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        self.final = self.offset + lengths
        trie = piece_trie(list(vocab))
        start, length, piece = [], [], []
        for w, text in enumerate(texts):
            base, n = int(self.offset[w]), len(text)
            for s in range(n):
                node, has_char = trie, False
                for e in range(s + 1, min(n, s + max_len) + 1):  # walk the trie along text[s:]
                    node = node.get(text[e - 1])
                    if node is None:
                        break
                    k = node.get("")
                    if k is not None and not (exclude_whole and e - s == n):
                        start.append(base + s), length.append(e - s), piece.append(vocab_ids[k])
                        has_char |= e == s + 1
                if not has_char:
                    start.append(base + s), length.append(1), piece.append(-1)
        self.start = np.array(start, dtype=np.int64)
        self.length = np.array(length, dtype=np.int64)
        self.piece = np.array(piece, dtype=np.int64)
        self.text_of_position = np.repeat(np.arange(len(texts)), lengths + 1)
        self._group()

    def _group(self) -> None:
        """Order nodes by (end position within its text, length): within a group every end is distinct."""
        end_local = self.start + self.length - self.offset[self.text_of_position[self.start]]
        order = np.lexsort((self.length, end_local))
        self.start, self.length, self.piece = self.start[order], self.length[order], self.piece[order]
        keys = end_local[order] * 1024 + self.length
        cuts = np.flatnonzero(np.diff(keys)) + 1
        self.groups = list(zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [len(keys)]]).tolist()))
        self.backward_groups = sorted(self.groups, key=lambda g: -(int(keys[g[0]]) // 1024 - int(self.length[g[0]])))

    def node_scores(self, scores: np.ndarray) -> np.ndarray:
        """Score of each node (unknown nodes: ``min(scores) - 10``)."""
        table = np.append(scores, scores.min() - UNK_PENALTY)
        return table[self.piece]

    def forward_backward(self, node_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(node marginals, log Z per text)``: the sum over all segmentations (Kudo 2018, E-step)."""
        n = len(self.text_of_position)
        alpha, beta = np.full(n, -np.inf), np.full(n, -np.inf)
        alpha[self.offset], beta[self.final] = 0.0, 0.0
        end = self.start + self.length
        for a, b in self.groups:
            e = end[a:b]
            alpha[e] = np.logaddexp(alpha[e], alpha[self.start[a:b]] + node_score[a:b])
        for a, b in self.backward_groups:
            s = self.start[a:b]
            beta[s] = np.logaddexp(beta[s], beta[end[a:b]] + node_score[a:b])
        log_z = alpha[self.final]
        text = self.text_of_position[self.start]
        return np.exp(alpha[self.start] + node_score + beta[end] - log_z[text]), log_z

    def viterbi(self, node_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best segmentation of every text: ``(text, piece)`` of each node on a best path, and each best score."""
        n = len(self.text_of_position)
        best, back = np.full(n, -np.inf), np.full(n, -1)
        best[self.offset] = 0.0
        end = self.start + self.length
        for a, b in self.groups:
            e, cand = end[a:b], best[self.start[a:b]] + node_score[a:b]
            better = cand > best[e]
            best[e[better]], back[e[better]] = cand[better], np.arange(a, b)[better]
        texts, pieces = [], []
        pos = self.final.copy()
        live = np.flatnonzero((pos != self.offset) & (back[pos] >= 0))
        while live.size:
            node = back[pos[live]]
            texts.append(live), pieces.append(self.piece[node])
            pos[live] = self.start[node]
            live = live[(pos[live] != self.offset[live]) & (back[pos[live]] >= 0)]
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64))
        return cat(texts), cat(pieces), best[self.final]


# -- EM and pruning --------------------------------------------------------------------------------


def digamma(x: float) -> float:
    """ψ(x) by recurrence to x >= 7 and the asymptotic series (SentencePiece's ``Digamma``)."""
    result = 0.0
    while x < 7:
        result -= 1 / x
        x += 1
    x -= 0.5
    xx2 = 1 / (x * x)
    xx4 = xx2 * xx2
    return result + math.log(x) + xx2 / 24 - 7 * xx4 / 960 + 31 * xx4 * xx2 / 8064 - 127 * xx4 * xx4 / 30720


def e_step(lattices: Lattices, scores: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, float]:
    """Expected count of every piece over all words (word count x node marginal) and the objective -E[log p]."""
    marginal, log_z = lattices.forward_backward(lattices.node_scores(scores))
    weight = marginal * counts[lattices.text_of_position[lattices.start]]
    known = lattices.piece >= 0
    expected = np.bincount(lattices.piece[known], weight[known], minlength=len(scores))
    return expected, float(-(counts * log_z).sum() / counts.sum())


def m_step(pieces: list[str], expected: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Pieces with expected count >= 0.5, scored ``ψ(count) - ψ(total)`` (Bayesian EM; Liang 2007)."""
    keep = np.flatnonzero(expected >= 0.5)
    logsum = digamma(float(expected[keep].sum()))
    return [pieces[i] for i in keep], np.array([digamma(float(expected[i])) - logsum for i in keep])


def prune(pieces: list[str], scores: np.ndarray, words: list[str], counts: np.ndarray,
          lattices: Lattices, config: UnigramTrainerConfig, desired: int) -> list[int]:  # fmt: skip
    """Indices of the pieces to keep: those whose removal costs the most likelihood (SentencePiece ``PruneSentencePieces``).

    A piece whose best segmentation is itself may be replaced by its second best (its
    alternatives); loss = F x (log p(piece) - sum log p'(alternative)), F its share of words.
    """
    vocab = {p: i for i, p in enumerate(pieces)}
    alt_lat = Lattices(pieces, vocab, config.max_piece_length, exclude_whole=True)
    alt_text, alt_piece, alt_best = alt_lat.viterbi(alt_lat.node_scores(scores))
    alternatives: list[list[int]] = [[] for _ in pieces]
    for t, p in zip(alt_text.tolist(), alt_piece.tolist()):
        if p >= 0:
            alternatives[t].append(p)
    word_text, word_piece, _ = lattices.viterbi(lattices.node_scores(scores))
    known = word_piece >= 0
    freq = np.bincount(word_piece[known], counts[word_text[known]], minlength=len(pieces)).astype(float)
    pairs = np.unique(np.stack([word_piece[known], word_text[known]]), axis=1)
    share = np.bincount(pairs[0], counts[pairs[1]], minlength=len(pieces)) / counts.sum()
    total = freq.sum()
    keep, candidates = [], []
    for i in range(len(pieces)):
        if freq[i] == 0:
            continue  # on no best path
        removable = np.isfinite(alt_best[i]) and alt_best[i] > scores[i]
        if removable:
            continue  # its own best segmentation is already split
        alt = alternatives[i] if np.isfinite(alt_best[i]) else []
        if not alt:
            keep.append(i)
            continue
        logprob = math.log(freq[i]) - math.log(total)
        logsum_alt = math.log(total + freq[i] * (len(alt) - 1))
        logprob_alt = sum(math.log(freq[n] + freq[i]) - logsum_alt for n in alt)
        candidates.append((share[i] * (logprob - logprob_alt), i))
    size = max(desired, int(config.shrinking_factor * len(pieces)))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    keep += [i for _, i in candidates[: max(0, size - len(keep))]]
    return sorted(keep)


def finalize(pieces: list[str], scores: np.ndarray, chars: dict[str, int], n_pieces: int) -> list[tuple[str, float]]:
    """Required characters (missing ones scored just above the minimum) then the best-scored pieces, best first."""
    have = dict(zip(pieces, scores.tolist()))
    low, penalty, final = float(scores.min()), 0.0, {}
    for c, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if c in have:
            final[c] = have[c]
        else:
            final[c], penalty = low + penalty, penalty + 0.0001
    for p, s in sorted(have.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(final) >= n_pieces:
            break
        final.setdefault(p, s)
    return sorted(final.items(), key=lambda kv: (-kv[1], kv[0]))


# -- the trainer ---------------------------------------------------------------------------------------


def train_unigram_pieces(texts: Iterable[str], config: UnigramTrainerConfig = UnigramTrainerConfig(),
                         progress: Callable[[int], None] | None = None) -> list[tuple[str, float]]:  # fmt: skip
    """``(piece, score)`` pairs, best first, learned from ``texts`` (one sentence per text) as SentencePiece does."""
    sentences: Counter[str] = Counter()
    for text in texts:
        too_long = len(text.encode("utf-8")) > config.max_sentence_bytes
        if not too_long and UNK_CHAR not in text and (s := normalize_sentence(text)):
            sentences[s] += 1
    if not sentences:
        raise TokenizerError("the training corpus has no text to learn pieces from")
    chars = required_chars(sentences, config.character_coverage)
    n_pieces = config.vocab_size - len(config.special_tokens) - 256 * config.byte_fallback
    if len(chars) > n_pieces:
        raise TokenizerError(f"vocab_size {config.vocab_size} is smaller than the {len(chars)} required characters; "
                             "raise vocab_size or lower character_coverage")  # fmt: skip
    sentences = _mark_unknown(sentences, chars)
    seeded = seed_pieces(sentences, config)
    word_counts = split_words(sentences)
    words, counts = list(word_counts), np.array(list(word_counts.values()), dtype=float)
    pieces, scores = [p for p, _ in seeded], np.array([s for _, s in seeded])
    desired = int(config.vocab_size * 1.1)
    vocab = {p: i for i, p in enumerate(pieces)}
    lattices = Lattices(words, vocab, config.max_piece_length)
    while True:
        for _ in range(config.num_sub_iterations):
            expected, _ = e_step(lattices, scores, counts)
            kept, scores = m_step(pieces, expected)
            lattices, pieces = _restrict(lattices, pieces, kept, words, config), kept
        if progress:
            progress(len(pieces))
        if len(pieces) <= desired:
            break
        keep = prune(pieces, scores, words, counts, lattices, config, desired)
        kept = [pieces[i] for i in keep]
        lattices, pieces, scores = _restrict(lattices, pieces, kept, words, config), kept, scores[keep]
    return finalize(pieces, scores, chars, n_pieces)


def _restrict(lattices: Lattices, pieces: list[str], kept: list[str], words: list[str], config) -> Lattices:
    """The lattices rebuilt over the kept pieces (a removed character may now need an unknown node)."""
    if len(kept) == len(pieces):
        return lattices
    return Lattices(words, {p: i for i, p in enumerate(kept)}, config.max_piece_length)


def train_unigram(texts: Iterable[str], config: UnigramTrainerConfig = UnigramTrainerConfig(), progress=None):
    """A SentencePiece-style Unigram :class:`Tokenizer` (NFKC, Metaspace) trained on ``texts``."""
    from llmkit.tokenize.normalize import (
        Metaspace,
        NormalizerSequence,
        UnicodeNormalizer,
    )
    from llmkit.tokenize.pretokenize import PRETOKENIZERS
    from llmkit.tokenize.special import AddedToken
    from llmkit.tokenize.tokenizer import Tokenizer
    from llmkit.tokenize.unigram import Unigram

    pieces = train_unigram_pieces(texts, config, progress)
    specials = [(t, 0.0) for t in config.special_tokens]
    byte_pieces = [(f"<0x{b:02X}>", 0.0) for b in range(256)] if config.byte_fallback else []
    model = Unigram(specials + byte_pieces + pieces, unk_id=0, byte_fallback=config.byte_fallback)
    added = [AddedToken(t, i) for i, t in enumerate(config.special_tokens)]
    normalizer = NormalizerSequence((UnicodeNormalizer("NFKC"), Metaspace()))
    decoder = "sentencepiece" if config.byte_fallback else "metaspace"  # <0xXX> runs decode as UTF-8
    return Tokenizer(model, PRETOKENIZERS["metaspace"], added, decoder=decoder, normalizer=normalizer)
