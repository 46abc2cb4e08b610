"""Session fixtures for the tokenizer tests: the real SmolLM2 vocabulary, ours and the oracle's.

The oracle is the tokenizer transformers builds from the same GGUF
(``AutoTokenizer.from_pretrained(dir, gguf_file=...)``), a HF ``tokenizers.Tokenizer``.
transformers gives the ``smollm`` pre-tokenizer plain GPT-2 splitting; SmolLM2's own
tokenizer.json (and llama.cpp's ``smollm``) first splits every digit off
(``Sequence([Digits(individual_digits=True), ByteLevel(use_regex=True)])``), so
``hf_smollm2_digits`` is the oracle with that pre-tokenizer put back.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from llmkit.tokenize import Tokenizer, from_gguf_metadata


@pytest.fixture(scope="session")
def smollm2_metadata(smollm2_gguf) -> dict:
    """The GGUF's metadata as transformers' GGUF reader reads it (tokenizer arrays in full)."""
    from transformers.integrations.gguf.reader import read_gguf_metadata

    keys = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    metadata, _ = read_gguf_metadata(str(smollm2_gguf), keys)
    return metadata


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf):
    """The oracle: transformers' tokenizer built from the GGUF, as a HF tokenizers.Tokenizer."""
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    return auto.backend_tokenizer


@pytest.fixture(scope="session")
def hf_smollm2_digits(hf_smollm2):
    """The oracle with SmolLM2's own pre-tokenizer: digits split off, then GPT-2's regex."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import pre_tokenizers

    hf = HFTokenizer.from_str(hf_smollm2.to_str())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    return hf


@pytest.fixture(scope="session")
def smollm2(smollm2_metadata) -> Tokenizer:
    """Our tokenizer from the GGUF metadata (pre-tokenizer 'smollm')."""
    return from_gguf_metadata(smollm2_metadata)


@pytest.fixture(scope="session")
def smollm2_gpt2_split(smollm2_metadata) -> Tokenizer:
    """Our tokenizer cutting pieces as transformers' GGUF loader does (plain GPT-2 regex)."""
    return from_gguf_metadata(smollm2_metadata, pretokenizer="gpt2")


@pytest.fixture(scope="session")
def real_text() -> dict[str, str]:
    """About 1 MB of real text per script family (see tokenizer_corpus.py)."""
    from tests.tokenize.tokenizer_corpus import corpus

    return corpus()


@pytest.fixture(scope="session")
def hf_minilm(minilm_dir):
    """The oracle: HF tokenizers loading all-MiniLM-L6-v2's tokenizer.json, without its truncation and padding."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    hf.no_truncation()
    hf.no_padding()
    return hf


@pytest.fixture(scope="session")
def minilm(minilm_dir) -> Tokenizer:
    """Our WordPiece tokenizer from all-MiniLM-L6-v2's tokenizer.json."""
    from llmkit.tokenize.tokenizer_json import load_tokenizer_json

    return load_tokenizer_json(minilm_dir / "tokenizer.json")
