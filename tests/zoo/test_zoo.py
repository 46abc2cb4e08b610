"""The zoo: lookups, data integrity, the sheet's rows, and resolve_spec for every kind of --model value."""

from __future__ import annotations

import json

import pytest

from llmkit import zoo
from llmkit.spec import SpecError, from_gguf_metadata
from llmkit.io.gguf_header import GGUFError, read_gguf_header

# The rows of the sheet's tables in sections 1, 2 and 6, as the sheet prints them.
SHEET_ROWS = {
    1: ["BERT-base", "BERT-large", "GPT-2 Small", "GPT-2 XL", "Typical LLM"],
    2: ["BERT-base", "BERT-large", "DistilBERT", "RoBERTa-base", "GPT-2", "GPT-2 XL", "GPT-3", "T5-base", "T5-11B",
        "LLaMA-7B", "LLaMA-13B", "LLaMA-70B", "LLaMA 3-8B", "LLaMA 3-70B", "Mistral 7B", "Mixtral 8×7B", "Phi-3-mini"],
    6: ["BERT-base", "RoBERTa", "DistilBERT", "DeBERTa-v3", "GPT-2", "GPT-3", "GPT-4", "T5-base", "BART", "FLAN-T5",
        "LLaMA 2-7B", "LLaMA 2-70B", "LLaMA 3-8B", "LLaMA 3-70B", "LLaMA 3.1-405B", "Mistral 7B", "Mixtral 8×7B",
        "Phi-3-mini", "Gemini 1.5 Pro", "Claude 3.5 Sonnet", "Qwen2-72B"],
}


@pytest.mark.parametrize("section", sorted(SHEET_ROWS))
def test_every_row_of_the_sheets_tables_is_in_the_zoo(section):
    assert {r.row for _, r in zoo.sheet_rows(section)} == set(SHEET_ROWS[section])


@pytest.mark.parametrize("entry, row", [(e, r) for e, r in zoo.sheet_rows() if r.section in (1, 2)],
                         ids=lambda x: getattr(x, "row", getattr(x, "name", "")))
def test_shapes_agree_with_the_sheets_dimension_tables(entry, row):
    """An independent check of the transcribed configs: the sheet's shape columns (section 1, 2) hold."""
    spec = entry.spec()
    c = row.claims
    assert int(c["d_model"]) == spec.d_model
    assert int(c["n_heads"]) == spec.n_heads
    layers = [int(x) for x in c["n_layers"].split("+")]
    assert layers == ([spec.n_encoder_layers, spec.n_layers] if spec.n_encoder_layers else [spec.n_layers])
    if c["d_ff"] != "—":  # Mixtral's row leaves it out
        assert int(c["d_ff"]) == spec.d_ff
    if "d_head" in c:
        assert int(c["d_head"]) == spec.d_head
    vocab = c["vocab"]
    assert (int(vocab[:-1]) == spec.vocab_size // 1000) if vocab.endswith("K") else int(vocab) == spec.vocab_size


def test_names_aliases_and_files():
    names = zoo.names()
    assert len(names) >= 35 and names == sorted(names)
    for n in names:
        e = zoo.entry(n)
        assert e.name == n and e.source
        if e.published:
            assert e.spec().name == n and e.spec().source == e.source
            assert e.config["model_type"] == e.spec().hf_model_type


@pytest.mark.parametrize(
    "alias, name",
    [("LLaMA 2-7B", "llama-2-7b"), ("llama2-7b", "llama-2-7b"), ("Llama-2-7b-hf", "llama-2-7b"),
     ("meta-llama/Llama-2-7b-hf", "llama-2-7b"), ("mistral-7b", "mistral-7b"), ("MIXTRAL 8x7B", "mixtral-8x7b"),
     ("Mixtral 8×7B", "mixtral-8x7b"), ("bert-base", "bert-base-uncased"), ("Typical LLM", "llama-7b"),
     ("LLaMA-70B", "llama-2-70b"), ("  gpt_2  ", "gpt2"), ("llama 3.1 405b", "llama-3.1-405b")],
)
def test_aliases_are_case_and_spacing_insensitive(alias, name):
    assert zoo.entry(alias).name == name


def test_unknown_name_lists_the_closest():
    with pytest.raises(zoo.ZooError, match=r"unknown model 'llama-2-8b': did you mean .*llama-2-7b"):
        zoo.get("llama-2-8b")
    with pytest.raises(zoo.ZooError, match="see `llmkit zoo list`"):
        zoo.get("qqqqqqqq")


@pytest.mark.parametrize("name", ["GPT-4", "Gemini 1.5 Pro", "Claude 3.5 Sonnet"])
def test_closed_models_say_no_architecture_is_published(name):
    e = zoo.entry(name)
    assert not e.published and e.sheet
    with pytest.raises(zoo.ZooError, match="no architecture is published"):
        zoo.get(name)


def test_gpt3_values_each_have_a_source():
    e = zoo.entry("gpt-3")
    assert "Table 2.1" in e.source
    assert set(e.sources) == set(e.config) - {"model_type"}


# -- resolve_spec: zoo name | config.json | directory | .gguf ----------------------------------------


def test_resolve_zoo_name():
    assert zoo.resolve_spec("LLaMA 2-7B") == zoo.get("llama-2-7b")


def test_resolve_config_file_and_directory(minilm_dir):
    from_dir = zoo.resolve_spec(str(minilm_dir))
    assert from_dir == zoo.resolve_spec(str(minilm_dir / "config.json"))
    assert (from_dir.d_model, from_dir.n_layers) == (384, 6)


def test_resolve_gguf_reads_only_the_header(smollm2_gguf):
    spec = zoo.resolve_spec(str(smollm2_gguf))
    header = read_gguf_header(smollm2_gguf)
    assert spec == from_gguf_metadata(header.metadata, header.tensor_names, name=smollm2_gguf.stem)
    assert spec.tied_embeddings and "output.weight" not in header.tensor_names


def test_resolve_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(GGUFError, match="missing.gguf: no such file"):
        zoo.resolve_spec(str(tmp_path / "missing.gguf"))
    with pytest.raises(SpecError, match="missing.json: no such file"):
        zoo.resolve_spec(str(tmp_path / "missing.json"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        zoo.resolve_spec(str(fake))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        zoo.resolve_spec(str(tmp_path))
    with pytest.raises(zoo.ZooError, match="no file or directory"):
        zoo.resolve_spec("no-such-model-anywhere")


def test_resolve_directory_without_config(tmp_path):
    with pytest.raises(SpecError, match="config.json: no such file"):
        zoo.resolve_spec(str(tmp_path))


def test_resolve_a_copied_config_gives_the_zoo_spec(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(zoo.entry("qwen2-72b").config)))
    assert zoo.resolve_spec(str(cfg)) == zoo.get("qwen2-72b").with_(name=tmp_path.name, source="")
