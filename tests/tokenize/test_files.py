"""Tokenizer files (GGUF metadata, vocab.txt, any source): what a file says is honoured, a bad file is named."""

from __future__ import annotations

import pytest

from llmkit.tokenize import TokenizerError, from_gguf_metadata
from llmkit.tokenize.files import load_tokenizer, load_vocab_txt


def test_control_and_user_defined_tokens_are_matched_whole(smollm2_metadata):
    meta = dict(smollm2_metadata)
    types = list(meta["tokenizer.ggml.token_type"])
    hello = meta["tokenizer.ggml.tokens"].index("Hello")
    types[hello] = 4  # user-defined: matched whole, but not special
    tok = from_gguf_metadata({**meta, "tokenizer.ggml.token_type": types})
    assert tok.encode("xHellox") == [*tok.encode("x"), hello, *tok.encode("x")]
    assert tok.decode(tok.encode("<|im_end|>Hello"), skip_special=True) == "Hello"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokenizer.ggml.model": "t5"}, "tokenizer model 't5' is not supported"),
        ({"tokenizer.ggml.model": "llama", "tokenizer.ggml.scores": [0.0]}, "49152 tokens, 1 scores"),
        ({"tokenizer.ggml.pre": "mystery"}, "unknown pre-tokenizer 'mystery'"),
        ({"tokenizer.ggml.merges": ["Ġ t", "Ġt"]}, "merge 1 is 'Ġt'; a merge is two tokens"),
        ({"tokenizer.ggml.merges": ["Ġ t", "Ġ ☃"]}, "merge 1 .* not in the vocabulary"),
        ({"tokenizer.ggml.token_type": [1, 3]}, "49152 tokens but 2 token types"),
        ({"tokenizer.ggml.eos_token_id": 10**6}, "eos_token_id is 1000000, outside the vocabulary"),
    ],
)
def test_malformed_metadata_is_named(smollm2_metadata, change, message):
    with pytest.raises(TokenizerError, match=message):
        from_gguf_metadata({**smollm2_metadata, **change})


def test_missing_vocabulary_is_named(smollm2_metadata):
    meta = {k: v for k, v in smollm2_metadata.items() if k != "tokenizer.ggml.tokens"}
    with pytest.raises(TokenizerError, match="no 'tokenizer.ggml.tokens'"):
        from_gguf_metadata(meta)


def test_malformed_vocab_txt_is_named(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(TokenizerError, match="no \\[CLS\\] token"):
        load_vocab_txt(path)
    path.write_text("[UNK]\n[CLS]\n[SEP]\nhello\nhello\n")
    with pytest.raises(TokenizerError, match="lists 'hello' twice"):
        load_vocab_txt(path)
    with pytest.raises(TokenizerError, match="cannot read"):
        load_vocab_txt(tmp_path / "missing.txt")


def test_load_tokenizer_by_path_directory_and_name(minilm_dir, smollm2_gguf, minilm, smollm2):
    text = "Tokenizers: 12 tests, naïve café!"
    for source in (minilm_dir, minilm_dir / "tokenizer.json", "all-minilm-l6-v2", "MiniLM"):
        assert load_tokenizer(source).encode(text) == minilm.encode(text)
    assert load_tokenizer(minilm_dir / "vocab.txt").encode(text) == minilm.encode(text)
    for source in (smollm2_gguf, "smollm2"):
        assert load_tokenizer(source).encode(text) == smollm2.encode(text)


def test_load_tokenizer_names_what_it_takes(tmp_path):
    with pytest.raises(TokenizerError, match="no such file or model; give a .gguf, tokenizer.json or vocab.txt path"):
        load_tokenizer("gpt-7")
    with pytest.raises(TokenizerError, match="holds no tokenizer.json, vocab.txt or .gguf"):
        load_tokenizer(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(TokenizerError, match="not a tokenizer file"):
        load_tokenizer(tmp_path / "model.bin")
