"""Generation (sheet sections 9 and 12): KV caches, logits processors, the decoding loop, chat templates.

    from llmkit.load import load
    from llmkit.generate import GenerationConfig, generate
    lm = load("smollm2")
    ids = encode_chat(lm.tokenizer, lm.chat_template, [{"role": "user", "content": "Hi!"}])
    result = generate(lm.model, lm.tokenizer, ids, GenerationConfig(max_new_tokens=64), on_text=print)

``cache`` (ContiguousKVCache and the KVCache interface), ``sampling`` (temperature, top-k,
top-p, seeded draws), ``config`` (GenerationConfig), ``loop`` (decode_tokens, generate),
``chat`` (ChatTemplate rendered as transformers renders it).
"""

from llmkit.generate.chat import ChatTemplate, encode_chat
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import GenerationResult, decode_tokens, generate

__all__ = ["ChatTemplate", "GenerationConfig", "GenerationResult", "decode_tokens", "encode_chat", "generate"]
