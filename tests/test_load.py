"""load_model: GGUF files, HF directories, and clear errors for anything else."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmkit.errors import LlmkitError
from llmkit.io.gguf import open_gguf
from llmkit.load import load, load_model


def test_gguf_loads_as_an_eval_module_with_tokenizer_and_template(smollm2_gguf):
    loaded = load(smollm2_gguf, precision="fp32")
    assert not loaded.model.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.spec == open_gguf(smollm2_gguf).spec()
    assert loaded.tokenizer.eos_id is not None and "<|im_start|>" in loaded.chat_template.source
    assert loaded.model.lm_head is None  # tied: the head is embed.weight


def test_bf16_holds_matrices_in_bf16_and_computes_in_float32(smollm2_gguf):
    model = load_model(smollm2_gguf, precision="bf16")
    state = model.state_dict()
    matrices = [name for name, t in state.items() if t.dim() == 2]
    assert len(matrices) == 7 * model.spec.n_layers + 1  # 7 per block and the head (the tied table)
    assert all(state[name].dtype == torch.bfloat16 for name in matrices)
    assert model.embed.head[0] is model.lm_head  # tied: lookups read the head's one table
    ids = torch.tensor([[5, 49151]])
    assert torch.equal(model.embed(ids), state["lm_head.data"][ids].float())
    assert model.activation_dtype == torch.float32 and state["norm.weight"].dtype == torch.float32


def test_hf_directory_loads_and_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_errors_name_the_problem(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(LlmkitError, match="not a GGUF file"):
        load_model(text)
    with pytest.raises(LlmkitError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(LlmkitError, match="no such file"):
        load_model(tmp_path / "missing.gguf")


def test_hf_directories_of_every_family_kind_load(tmp_path):
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        BertConfig,
        BertModel,
    )

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=32)).eval()
    bert.save_pretrained(tmp_path / "bert")
    encoder = load_model(tmp_path / "bert")
    ids, mask = torch.randint(3, 96, (2, 9)), torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (encoder(ids, attention_mask=mask) - expected)[mask.bool()].abs().max() <= 1e-5

    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32)).eval()
    bart.save_pretrained(tmp_path / "bart")
    enc_dec = load_model(tmp_path / "bart")
    target = torch.randint(3, 96, (2, 5))
    with torch.no_grad():
        expected = bart(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        assert torch.allclose(enc_dec(ids, attention_mask=mask, decoder_input_ids=target), expected, atol=1e-5)


def test_a_sharded_hf_directory_loads(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("*.safetensors"))) > 1
    ids = torch.randint(0, 96, (1, 7))
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path)(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_names_installed_pullable_and_zoo(minilm_dir):
    loaded = load("all-minilm-l6-v2")
    assert loaded.path == minilm_dir and loaded.spec.family == "encoder" and loaded.tokenizer is not None
    with pytest.raises(LlmkitError, match="zoo architecture"):
        load_model("llama-2-7b")


def test_the_generate_command_takes_a_hf_directory(tmp_path, capsys):
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    from llmkit.cli.main import main
    from llmkit.generate.config import GenerationConfig
    from llmkit.generate.loop import decode_tokens

    tok = Tokenizer(models.BPE())  # a small byte-level BPE, as GPT-2's
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the sky is blue and the sea is green"] * 4, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=1, n_head=4, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).eval().save_pretrained(tmp_path)
    try:
        main(["generate", "--model", str(tmp_path), "--prompt", "the sky is", "-n", "5", "--precision", "fp32",
              "--json"])
    except SystemExit as e:
        assert not e.code
    result = json.loads(capsys.readouterr().out)
    loaded = load(tmp_path)
    prompt = loaded.tokenizer.encode("the sky is")
    assert result["token_ids"] == list(decode_tokens(loaded.model, prompt, GenerationConfig(max_new_tokens=5)))
