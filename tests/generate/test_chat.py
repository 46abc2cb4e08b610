"""Chat templates render exactly as transformers' apply_chat_template renders them."""

from __future__ import annotations

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llmkit.generate.chat import ChatTemplate, ChatTemplateError, conversation

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And times 3? Answer in «French», with émoji 🎉."},
    ],
    [
        {"role": "system", "content": "Line one.\nLine two."},
        {"role": "user", "content": "  leading spaces and <|im_end|> inside  "},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_equals_transformers(smollm2, hf_tokenizer, messages, add_generation_prompt):
    expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    assert smollm2.chat_template.render(messages, add_generation_prompt) == expected


def test_special_tokens_equal_transformers(smollm2, hf_tokenizer):
    assert dict(smollm2.chat_template.special_tokens) == hf_tokenizer.special_tokens_map


# A template using what transformers' environment offers: trim/lstrip blocks, loop controls,
# tojson without HTML escaping, raise_exception, the {% generation %} tag, bos/eos variables.
FEATURES = """{{ bos_token }}
{% for m in messages %}
    {% if m['role'] == 'tool' %}{{ raise_exception('tools are not supported') }}{% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
    {% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] | tojson }}{% endgeneration %}
    {% else %}{{ m['role'] }}: {{ m | tojson(indent=2) }}{% endif %}
{% endfor %}
{% if add_generation_prompt %}>>{{ eos_token }}{% endif %}"""
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_environment_features_equal_transformers(messages):
    expected, _ = render_jinja_template([messages], chat_template=FEATURES, add_generation_prompt=True, **SPECIAL)
    assert ChatTemplate(FEATURES, SPECIAL).render(messages) == expected[0]


def test_raise_exception_is_a_clear_error():
    with pytest.raises(ChatTemplateError, match="tools are not supported"):
        ChatTemplate(FEATURES, SPECIAL).render([{"role": "tool", "content": "x"}])


def test_conversation_puts_the_system_prompt_first():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert conversation("c", system="s", history=history) == [
        {"role": "system", "content": "s"}, *history, {"role": "user", "content": "c"}
    ]
