"""Generation (sheet sections 9 and 12): KV caches, logits processors, search, speculative decoding, chat templates.

    from llmkit.load import load
    from llmkit.generate import GenerationConfig, generate
    lm = load("smollm2")
    ids = encode_chat(lm.tokenizer, lm.chat_template, [{"role": "user", "content": "Hi!"}])
    result = generate(lm.model, lm.tokenizer, ids, GenerationConfig(max_new_tokens=64), on_text=print)

``cache`` (the KVCache interface: contiguous, sliding-window with sinks, paged, int8), ``sampling``
(the logits processors in transformers' order, seeded draws), ``config`` (GenerationConfig),
``loop`` (decode_tokens, batched decode_batch, generate, generate_batch), ``search`` (beam and
contrastive search), ``speculative`` (draft-and-verify, self-drafts), ``chat`` (ChatTemplate).
"""

from llmkit.generate.cache import CacheConfig, make_cache
from llmkit.generate.chat import ChatTemplate, encode_chat
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import GenerationResult, Sequence, decode_batch, decode_tokens, generate, generate_batch

__all__ = ["CacheConfig", "ChatTemplate", "GenerationConfig", "GenerationResult", "Sequence", "decode_batch",
           "decode_tokens", "encode_chat", "generate", "generate_batch", "make_cache"]
