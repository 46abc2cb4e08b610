"""SentencePiece-type GGUF vocabularies (``tokenizer.ggml.model = "llama"``: LLaMA-1/2, Mistral).

A sentencepiece BPE model with byte fallback is trained here on real text, written into a small
GGUF with ``gguf.GGUFWriter`` (tokens, scores, token types, no merges), and read three ways:
ours, transformers' GGUF loader (the oracle that rebuilds merges from scores) and sentencepiece.
"""

from __future__ import annotations

import io

import pytest

from llmkit.tokenize import from_gguf_metadata

FAMILIES = ["english", "code", "accented-latin", "cjk", "cyrillic", "arabic", "emoji"]


@pytest.fixture(scope="module")
def spm_bpe(real_text):
    import sentencepiece as spm

    lines = [l for fam in ("english", "accented-latin", "cyrillic") for l in real_text[fam][:150_000].splitlines()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=3000,
                                   byte_fallback=True, num_threads=1, minloglevel=2, user_defined_symbols=["<tool>"])  # fmt: skip
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def _token_type(sp, i: int) -> int:
    """llama.cpp's token type of a sentencepiece piece (as convert_hf_to_gguf.py writes it)."""
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    return 4 if sp.id_to_piece(i) == "<tool>" else 1


@pytest.fixture(scope="module")
def gguf_path(spm_bpe, tmp_path_factory):
    import gguf

    sp = spm_bpe
    path = tmp_path_factory.mktemp("spm_gguf") / "tiny-llama.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list([sp.id_to_piece(i) for i in range(sp.get_piece_size())])
    writer.add_token_scores([sp.get_score(i) for i in range(sp.get_piece_size())])
    writer.add_token_types([_token_type(sp, i) for i in range(sp.get_piece_size())])
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_add_bos_token(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def ours(gguf_path):
    from llmkit.io.gguf import open_gguf

    return from_gguf_metadata(open_gguf(gguf_path).metadata)


@pytest.fixture(scope="module")
def hf(gguf_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).backend_tokenizer


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_and_offsets_equal_transformers_gguf_tokenizer(ours, hf, real_text, family):
    for text in real_text[family][:30_000].splitlines()[:400]:
        enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
        assert enc.ids == theirs.ids, text
        assert enc.offsets == theirs.offsets, text
        assert ours.decode(enc.ids, skip_special=True) == hf.decode(theirs.ids, skip_special_tokens=True)


@pytest.mark.parametrize("text", ["", " ", "  two  spaces ", "<s>Hello</s> world", "a<tool>b", "日本語 ok", "x\n\ny"])
def test_edge_cases_equal_transformers(ours, hf, text):
    enc, theirs = ours.encode_with_offsets(text), hf.encode(text)
    assert (enc.ids, enc.offsets) == (theirs.ids, theirs.offsets)


@pytest.mark.parametrize("family", ["english", "accented-latin", "cyrillic", "cjk", "emoji"])
def test_ids_equal_sentencepiece(ours, spm_bpe, real_text, family):
    """sentencepiece itself (nmt_nfkc normalizes; compare on text NFKC leaves alone, whitespace single)."""
    import unicodedata

    for text in real_text[family][:30_000].splitlines()[:400]:
        text = " ".join(text.split())
        if unicodedata.normalize("NFKC", text) != text or "<tool>" in text:
            continue
        assert ours.encode(text, add_special=False) == spm_bpe.encode(text), text
        assert ours.decode(ours.encode(text, add_special=False)) == spm_bpe.decode(spm_bpe.encode(text))
