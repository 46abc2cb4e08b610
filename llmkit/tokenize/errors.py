"""The tokenizer package's error: bad tokenizer files or text a tokenizer cannot take."""

from llmkit.errors import LlmkitError


class TokenizerError(LlmkitError, ValueError):
    """A malformed vocabulary or tokenizer file, or text that cannot be encoded."""
