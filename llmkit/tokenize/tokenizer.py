"""The Tokenizer: text -> ids -> text, the one interface the engine and the CLI use.

The pipeline is HF tokenizers' (and llama.cpp's), one step per line of :meth:`Tokenizer.encode`::

    text --added tokens cut out--> segments --normalize--> --pre-tokenize--> pieces
         --model (BPE / WordPiece) per piece, cached--> ids --post-process (BOS, [CLS] ... [SEP])--> ids

Byte-level models decode losslessly: ids -> bytes -> UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal, Protocol

import regex

from llmkit.io.packed import PackedBytes
from llmkit.tokenize.byte_level import token_bytes
from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.pretokenize import Pretokenizer, pretokenize, pretokenize_spans
from llmkit.tokenize.special import AddedToken, AddedVocabulary

DecoderKind = Literal["byte_level", "bytes", "wordpiece", "metaspace", "sentencepiece"]

_SURROGATE = regex.compile(r"[\ud800-\udfff]")


class Model(Protocol):
    """What a tokenizer model gives the pipeline: its vocabulary and a cached piece -> ids map."""

    tokens: list[str]
    vocab: dict[str, int]
    cache: dict[str, tuple[int, ...]]

    def piece_offsets(self, piece: str, ids: tuple[int, ...]) -> list[tuple[int, int]]: ...


class Normalizer(Protocol):
    """Rewrites text before pre-tokenization; ``aligned`` also maps output characters to input ones."""

    def __call__(self, text: str) -> str: ...

    def aligned(self, text: str) -> tuple[str, list[int]]: ...


@dataclass(frozen=True)
class PostProcessor:
    """Ids put around an encoded text: BOS / EOS, or BERT's ``[CLS] ... [SEP]`` (HF TemplateProcessing)."""

    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()


@dataclass(frozen=True)
class Encoding:
    """Ids, their tokens, and the ``(start, end)`` character span of the text each came from."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]] = field(default_factory=list)


class Tokenizer:
    """Encode text to ids and decode ids to text; built by ``from_gguf_metadata`` or ``load_tokenizer``."""

    def __init__(
        self,
        model: Model,
        pretokenizer: Pretokenizer,
        added: list[AddedToken] = (),
        post: PostProcessor = PostProcessor(),
        decoder: DecoderKind = "byte_level",
        bos_id: int | None = None,
        eos_id: int | None = None,
        normalizer: Normalizer | None = None,
    ):
        self.model, self.pretokenizer, self.post, self.decoder = model, pretokenizer, post, decoder
        self.added = AddedVocabulary(list(added))
        self._plain_added = AddedVocabulary([t for t in added if not t.special])  # matched when specials are text
        self.bos_id, self.eos_id, self.normalizer = bos_id, eos_id, normalizer
        after_start = getattr(normalizer, "after_start", None)  # Metaspace "first": no ▁ after an added token
        self._later_normalizer = after_start() if after_start else normalizer
        self.special_ids = frozenset(t.id for t in added if t.special)
        # The model's vocabulary as it holds it (a GGUF one packed: no copy), and the added tokens over it: their
        # spelling where it differs or lies beyond the vocabulary (HF tokenizer.json allows both), their bytes.
        self._tokens = model.tokens
        vocab_size = len(model.tokens)
        self._added_tokens = {t.id: t.content for t in added if t.id >= vocab_size or model.tokens[t.id] != t.content}
        self._vocab_size = max([vocab_size] + [t.id + 1 for t in added])
        known = getattr(model, "token_bytes", None)
        if known is None or len(known) < len(model.tokens):
            known = PackedBytes.of(chain(known or [], map(token_bytes, model.tokens[len(known or []) :])))
        self._bytes = known
        self._added_bytes = {t.id: t.content.encode("utf-8") for t in added}

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids (the model's vocabulary plus added tokens)."""
        return self._vocab_size

    def token_to_id(self, token: str) -> int | None:
        """Id of a token as the vocabulary spells it (``Ġthe``, ``<|im_end|>``), or None."""
        if token in self.added.by_content:
            return self.added.by_content[token].id
        return self.model.vocab.get(token)

    def id_to_token(self, id: int) -> str:
        """The vocabulary's spelling of an id."""
        self._check_ids([id])
        return self._token(id)

    def _token(self, id: int) -> str:
        if id in self._added_tokens:
            return self._added_tokens[id]
        return self._tokens[id] if id < len(self._tokens) else ""  # an id between the vocabulary and an added one

    def token_bytes(self, id: int) -> bytes:
        """The bytes an id stands for when decoded (byte-level models)."""
        if id in self._added_bytes:
            return self._added_bytes[id]
        return self._bytes[id] if id < len(self._bytes) else b""

    # -- encode -------------------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Ids of ``text``; ``add_special`` adds the post-processor's BOS / EOS / [CLS] [SEP].

        ``parse_special=False`` encodes special tokens written in the text as plain text (for
        untrusted input: a user cannot type ``<|im_end|>``); non-special added tokens still match.
        """
        check_text(text)
        ids: list[int] = []
        for start, end, added_id in (self.added if parse_special else self._plain_added).split(text):
            if added_id is not None:
                ids.append(added_id)
            else:
                ids += self._encode_plain(text[start:end], start == 0)
        return self._post_process(ids) if add_special else ids

    def _encode_plain(self, text: str, at_start: bool = True) -> list[int]:
        """Ids of text with no added token in it: normalize, cut into pieces, look each up."""
        normalizer = self.normalizer if at_start else self._later_normalizer
        if normalizer is not None:
            text = normalizer(text)
        pieces = pretokenize(self.pretokenizer, text)
        return list(chain.from_iterable(map(self.model.cache.__getitem__, pieces)))

    def _post_process(self, ids: list[int]) -> list[int]:
        return [*self.post.prefix, *ids, *self.post.suffix]

    def encode_batch(self, texts: Iterable[str], add_special: bool = True, processes: int = 1) -> list[list[int]]:
        """:meth:`encode` of each text, over ``processes`` worker processes (forked, each with its own cache)."""
        texts = list(texts)
        if processes <= 1 or len(texts) < 2:
            return [self.encode(t, add_special) for t in texts]
        import multiprocessing

        context = multiprocessing.get_context("fork")
        chunk = max(1, len(texts) // (processes * 4))
        with context.Pool(processes, initializer=_set_worker_tokenizer, initargs=(self, add_special)) as pool:
            return pool.map(_worker_encode, texts, chunksize=chunk)

    def encode_with_offsets(self, text: str, add_special: bool = True) -> Encoding:
        """Ids, tokens and ``(start, end)`` character offsets into ``text`` (HF ``Encoding.offsets``).

        Offsets point into the original text even when a normalizer rewrote it; the ids put
        around it by the post-processor get ``(0, 0)``.
        """
        check_text(text)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for start, end, added_id in self.added.split(text):
            if added_id is not None:
                ids.append(added_id)
                offsets.append((start, end))
                continue
            segment = text[start:end]
            normalizer = self.normalizer if start == 0 else self._later_normalizer
            normal, source = normalizer.aligned(segment) if normalizer else (segment, None)
            for s, e in pretokenize_spans(self.pretokenizer, normal):
                piece = normal[s:e]
                piece_ids = self.model.cache[piece]
                ids += piece_ids
                for a, b in self.model.piece_offsets(piece, piece_ids):
                    a, b = (source[s + a], source[s + b - 1] + 1) if source else (s + a, s + b)
                    offsets.append((start + a, start + b))
        if add_special:
            ids = self._post_process(ids)
            offsets = [(0, 0)] * len(self.post.prefix) + offsets + [(0, 0)] * len(self.post.suffix)
        return Encoding(ids, list(map(self._token, ids)), offsets)

    # -- decode -------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """The text of ``ids``; invalid UTF-8 (a cut-off character) becomes U+FFFD."""
        ids = list(ids)
        self._check_ids(ids)
        if skip_special:
            ids = [i for i in ids if i not in self.special_ids]
        if self.decoder == "wordpiece":
            from llmkit.tokenize.wordpiece import wordpiece_decode

            return wordpiece_decode(list(map(self._token, ids)))
        if self.decoder in ("metaspace", "sentencepiece"):
            from llmkit.tokenize.decoders import metaspace_decode, sentencepiece_decode

            tokens, prepends = list(map(self._token, ids)), getattr(self.normalizer, "prepends", False)
            return (metaspace_decode if self.decoder == "metaspace" else sentencepiece_decode)(tokens, prepends)
        errors = "ignore" if self.decoder == "bytes" else "replace"  # ByT5 drops broken UTF-8
        return b"".join(map(self.token_bytes, ids)).decode("utf-8", errors)

    def _check_ids(self, ids: list[int]) -> None:
        bad = next((i for i in ids if not 0 <= i < self._vocab_size), None)
        if bad is not None:
            raise TokenizerError(f"token id {bad} is out of range: this vocabulary has ids 0..{self._vocab_size - 1}")


_WORKER: tuple[Tokenizer, bool] | None = None


def _set_worker_tokenizer(tokenizer: Tokenizer, add_special: bool) -> None:
    global _WORKER
    _WORKER = (tokenizer, add_special)


def _worker_encode(text: str) -> list[int]:
    tokenizer, add_special = _WORKER
    return tokenizer.encode(text, add_special)


def check_text(text: str) -> None:
    """Reject what cannot be encoded: non-str input and lone UTF-16 surrogates (not Unicode text)."""
    if not isinstance(text, str):
        raise TokenizerError(f"text to encode must be str, got {type(text).__name__}")
    m = _SURROGATE.search(text)
    if m:
        raise TokenizerError(
            f"text has a lone surrogate U+{ord(m.group()):04X} at character {m.start()}: it is not valid Unicode; "
            "decode the input with errors='replace' or fix its source"
        )
