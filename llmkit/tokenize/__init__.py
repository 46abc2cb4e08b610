"""Tokenizers (sheet section 5), exact to HF tokenizers: byte-level BPE (GPT-2 / LLaMA-3 / SmolLM),
character-level BPE with byte fallback (LLaMA-2, Mistral; also from SentencePiece-type GGUF files),
WordPiece (BERT), Unigram (SentencePiece; n-best and sampling), ByT5 bytes, characters.

    tok = load_tokenizer("smollm2")             # or a .gguf, tokenizer.json, vocab.txt, a model name
    tok = from_gguf_metadata(open_gguf(path).metadata)
    ids = tok.encode("Hello<|im_end|>")        # special tokens matched whole
    tok.decode(ids) == "Hello<|im_end|>"
    for text in StreamDecoder(tok).stream(ids): print(text, end="")

Modules, in pipeline order: ``special`` (added tokens), ``normalize`` (BERT, NFC/NFKC/NFD/NFKD,
lowercase, strip accents, Metaspace), ``pretokenize`` (the splitting regexes), the models ``bpe`` /
``wordpiece`` / ``unigram`` / ``byt5`` / ``char``, ``tokenizer`` (the pipeline), ``decoders``,
``streaming``; files in ``files`` (GGUF, vocab.txt) and ``tokenizer_json``; the trainers
``train_bpe`` (BPE, WordPiece) and ``train_unigram`` (SentencePiece's EM); ``stats``.
"""

from llmkit.tokenize.byt5 import byt5_tokenizer
from llmkit.tokenize.char import char_tokenizer, char_vocabulary
from llmkit.tokenize.errors import TokenizerError
from llmkit.tokenize.files import from_gguf_metadata, load_tokenizer, load_vocab_txt
from llmkit.tokenize.stats import TokenStats, token_stats
from llmkit.tokenize.streaming import StreamDecoder
from llmkit.tokenize.tokenizer import Encoding, Tokenizer
from llmkit.tokenize.tokenizer_json import load_tokenizer_json, save_tokenizer_json
from llmkit.tokenize.train_bpe import BpeTrainerConfig, train_byte_level_bpe
from llmkit.tokenize.train_unigram import UnigramTrainerConfig, train_unigram

__all__ = [
    "BpeTrainerConfig",
    "Encoding",
    "StreamDecoder",
    "TokenStats",
    "Tokenizer",
    "TokenizerError",
    "UnigramTrainerConfig",
    "byt5_tokenizer",
    "char_tokenizer",
    "char_vocabulary",
    "from_gguf_metadata",
    "load_tokenizer",
    "load_tokenizer_json",
    "load_vocab_txt",
    "save_tokenizer_json",
    "token_stats",
    "train_byte_level_bpe",
    "train_unigram",
]
