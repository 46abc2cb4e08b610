"""Chat templates: a conversation -> the prompt text the model was tuned on.

The template is the Jinja source stored with the model (GGUF ``tokenizer.chat_template``,
HF ``tokenizer_config.json``). It is rendered exactly as transformers'
``apply_chat_template`` renders it: a sandboxed, immutable jinja2 environment with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a ``{% generation %}``
tag that renders its body, a ``tojson`` that does not escape HTML, the globals
``raise_exception`` and ``strftime_now``, and the special tokens (``bos_token``,
``eos_token``, ``unk_token``, ``pad_token``) as variables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping

from llmkit.errors import LlmkitError

if TYPE_CHECKING:
    import jinja2

Message = Mapping[str, Any]  # {"role": "system" | "user" | "assistant", "content": str, ...}


class ChatTemplateError(LlmkitError):
    """The chat template cannot be compiled or refuses the conversation."""


@lru_cache(maxsize=1)
def _generation_tag() -> type:
    """The ``{% generation %}...{% endgeneration %}`` extension (assistant-mask markers): renders its body unchanged.

    Built on first use, like everything jinja2: the module is imported only when a template compiles
    (~1.8 MB of a process that never chats).
    """
    import jinja2.ext
    import jinja2.nodes

    class GenerationTag(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> jinja2.nodes.Node:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return caller()

    return GenerationTag


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """The compiled template, in transformers' environment (sandboxed, trim_blocks, lstrip_blocks)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_generation_tag(), jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"the model's chat template does not compile: {e.message} (line {e.lineno})") from None


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template plus the special-token strings it may refer to."""

    source: str
    special_tokens: Mapping[str, str] = field(default_factory=dict)  # bos_token, eos_token, unk_token, pad_token

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` (None-valued keys dropped, as transformers does)."""
        import jinja2

        clean = [{k: v for k, v in m.items() if v is not None} for m in messages]
        try:
            return compile_template(self.source).render(
                messages=clean, tools=None, documents=None, add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"the chat template refused the conversation: {e}") from None


GGUF_SPECIAL_TOKENS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def from_gguf_metadata(metadata: Mapping[str, Any]) -> ChatTemplate:
    """The ChatTemplate a GGUF carries (``tokenizer.chat_template``), special tokens from its token ids."""
    source = metadata.get("tokenizer.chat_template")
    if not source:
        raise ChatTemplateError("this model has no chat template (tokenizer.chat_template); use a plain prompt")
    tokens = metadata.get("tokenizer.ggml.tokens") or []
    special = {}
    for name, key in GGUF_SPECIAL_TOKENS.items():
        token_id = metadata.get(key)
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            special[name] = str(tokens[int(token_id)])
    return ChatTemplate(str(source), special)


def conversation(user: str, system: str | None = None, history: list[Message] = ()) -> list[Message]:
    """[system?] + history + the new user message."""
    head = [{"role": "system", "content": system}] if system else []
    return head + list(history) + [{"role": "user", "content": user}]


def encode_chat(tokenizer: Any, template: ChatTemplate, messages: list[Message]) -> list[int]:
    """Token ids of the rendered conversation plus the assistant header (the template adds any BOS itself)."""
    return tokenizer.encode(template.render(messages, add_generation_prompt=True), add_special=False)


def trim_history(
    tokenizer: Any, template: ChatTemplate, messages: list[Message], budget: int
) -> tuple[list[Message], list[int]]:
    """Drop the oldest turns (user message + replies) until the prompt fits ``budget`` tokens; (messages, ids).

    The system prompt and the last user message are always kept; if those alone do not fit,
    that is an error the user can act on.
    """
    messages = list(messages)
    while True:
        ids = encode_chat(tokenizer, template, messages)
        if len(ids) <= budget:
            return messages, ids
        first = next((i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"), None)
        if first is None:
            raise ChatTemplateError(
                f"the message needs {len(ids)} tokens but only {budget} fit the context window; shorten it"
            )
        del messages[first]  # the oldest turn: a user message and the replies to it
        while first < len(messages) - 1 and messages[first].get("role") != "user":
            del messages[first]
