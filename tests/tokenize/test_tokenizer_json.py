"""HF tokenizer.json: files HF writes load here, files saved here load in HF, both to the same ids."""

from __future__ import annotations

import pytest

from llmkit.tokenize import TokenizerError
from llmkit.tokenize.tokenizer_json import load_tokenizer_json, save_tokenizer_json


def test_saved_bpe_tokenizer_json_loads_in_hf_with_the_same_ids(smollm2, real_text, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    save_tokenizer_json(smollm2, tmp_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ours_again = load_tokenizer_json(tmp_path / "tokenizer.json")
    text = real_text["code"][:100_000] + "<|im_start|>x 12<|im_end|>" + real_text["cjk"][:50_000]
    ids = smollm2.encode(text)
    assert hf.encode(text).ids == ids
    assert ours_again.encode(text) == ids
    assert hf.decode(ids, skip_special_tokens=False) == smollm2.decode(ids)


def test_saved_wordpiece_tokenizer_json_loads_in_hf_with_the_same_ids(minilm, real_text, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    save_tokenizer_json(minilm, tmp_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = real_text["accented-latin"][:100_000]
    assert hf.encode(text).ids == minilm.encode(text)
    assert load_tokenizer_json(tmp_path / "tokenizer.json").encode(text) == minilm.encode(text)


def test_hf_saved_smollm2_tokenizer_json_loads(hf_smollm2_digits, smollm2, tmp_path):
    hf_smollm2_digits.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer_json(tmp_path / "tokenizer.json")
    assert tok.pretokenizer.name == "gpt2-digits"
    text = "def f(x):\n    return x ** 2  # 42 <|endoftext|>"
    assert tok.encode(text) == smollm2.encode(text) == hf_smollm2_digits.encode(text).ids


def test_split_regex_pretokenizer_loads(hf_smollm2, tmp_path):
    """A Split(regex) + ByteLevel pre-tokenizer (transformers' llama3 / qwen2 shape) is read as that regex."""
    from tokenizers import Regex
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import pre_tokenizers as P

    from llmkit.tokenize.pretokenize import QWEN2_PATTERN

    hf = HFTokenizer.from_str(hf_smollm2.to_str())
    hf.pre_tokenizer = P.Sequence([P.Split(Regex(QWEN2_PATTERN), behavior="isolated"), P.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer_json(tmp_path / "tokenizer.json")
    assert tok.pretokenizer.name == "qwen2"
    text = "It's 2024: 12345 apples,\r\n\r\n  and I'LL go!!\n"
    assert tok.encode(text) == hf.encode(text).ids


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"version": "1.0"}', "has no 'model' object"),
        ('{"model": {"type": "WordLevel", "vocab": {}}}', "model type 'WordLevel' is not supported"),
        ('{"model": {"type": "Unigram", "vocab": []}, "pre_tokenizer": {"type": "Metaspace"}}', "non-empty list of \\[piece, score\\]"),
        ('{"model": {"type": "WordPiece", "vocab": {"a": 0, "b": 0}}}', "ids must be 0..1, once each"),
        ('{"model": {"type": "WordPiece", "vocab": {"a": 0}}}', "unknown token '\\[UNK\\]' is not in"),
        ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}}', "merge 0 .* not in the vocabulary"),
        ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}}', "pre-tokenizer .*Whitespace.* is not supported"),
    ],
)
def test_malformed_tokenizer_json_is_named(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer_json(path)
