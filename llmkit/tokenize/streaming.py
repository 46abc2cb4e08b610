"""Streaming decode: text as tokens arrive, never half a character.

A byte-level token can end inside a UTF-8 character (``日`` is 3 bytes, often 2 tokens).
The stream keeps such a tail until the next token completes it; ``flush`` ends the stream,
turning a tail that never completed into U+FFFD. Joined, the pieces equal
``tokenizer.decode(all_ids)``.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.tokenizer import Tokenizer


class StreamDecoder:
    """Feed ids one at a time; each call returns the text completed so far (maybe "")."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        if tokenizer.decoder != "byte_level":
            raise TokenizerError(f"streaming decode needs a byte-level tokenizer; this one decodes as {tokenizer.decoder!r}")
        self.tokenizer, self.skip_special = tokenizer, skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, id: int) -> str:
        """Text completed by this token; an unfinished character waits for the next one."""
        tok = self.tokenizer
        tok._check_ids([id])
        if self.skip_special and id in tok.special_ids:
            return ""
        return self._utf8.decode(tok.token_bytes(id))

    def flush(self) -> str:
        """The end of the stream: any unfinished character as U+FFFD."""
        return self._utf8.decode(b"", final=True)

    def stream(self, ids: Iterable[int]) -> Iterator[str]:
        """The non-empty text pieces of ``ids``, flushed at the end."""
        for id in ids:
            if text := self.feed(id):
                yield text
        if text := self.flush():
            yield text
