"""``llmkit generate`` on encoder-decoder directories (tiny random T5 and BART with a tokenizer.json): the ids of
transformers' generate for the same source ids."""

from __future__ import annotations

import json

import pytest
import torch

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "translate english to german: the house is small",
          "summarize: the quick brown fox jumps over the lazy dog"] * 4
SPECIALS = {"t5": ["<pad>", "</s>", "<unk>"], "bart": ["<s>", "<pad>", "</s>", "<unk>"]}  # ids 0.. as the families number them
TEMPLATE = {"t5": "$A </s>", "bart": "<s> $A </s>"}  # what their tokenizers add around a text


def _tokenizer(family: str):
    """A byte-level BPE trained with HF tokenizers on CORPUS, with the family's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS[family],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    specials = [(t, tok.token_to_id(t)) for t in SPECIALS[family] if t in TEMPLATE[family]]
    tok.post_processor = processors.TemplateProcessing(single=TEMPLATE[family], special_tokens=specials)
    return tok


def _model(family: str, vocab: int):
    """A tiny random transformers T5 / BART over ``vocab`` tokens (matrices drawn large so the argmaxes vary)."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if family == "t5":
        config = T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=20,
                          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
        model, std = T5ForConditionalGeneration(config), 0.3
    else:
        config = BartConfig(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
        model, std = BartForConditionalGeneration(config), 0.5
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model.eval()


@pytest.fixture(scope="module", params=["t5", "bart"])
def model_dir(request, tmp_path_factory):
    """(directory with config.json, model.safetensors, tokenizer.json; transformers model; HF tokenizer)."""
    tok = _tokenizer(request.param)
    hf = _model(request.param, tok.get_vocab_size())
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    hf.generation_config.forced_eos_token_id = None  # BART forces EOS at the length limit; llmkit generate has no such flag
    return path, hf, tok


def _hf_generate(hf, source: list[int], **settings) -> list[int]:
    from transformers import GenerationConfig

    c = hf.generation_config
    config = GenerationConfig(max_new_tokens=12, do_sample=False, decoder_start_token_id=c.decoder_start_token_id,
                              pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id, **settings)
    with torch.no_grad():
        return hf.generate(torch.tensor([source]), generation_config=config)[0, 1:].tolist()


@pytest.mark.parametrize("prompt", ["the cat sat on the mat", "summarize: a dog ran over the house"])
@pytest.mark.parametrize("flags,settings", [
    (["--greedy"], {"num_beams": 1}),
    (["--repetition-penalty", "1.5"], {"num_beams": 1, "repetition_penalty": 1.5}),
    (["--num-beams", "3"], {"num_beams": 3}),
])
def test_generate_equals_transformers(cli, model_dir, prompt, flags, settings):
    path, hf, tok = model_dir
    code, out, err = cli(["generate", "--model", str(path), "--prompt", prompt, "-n", "12", "--json",
                          "--precision", "fp32", *flags])
    assert code == 0, err
    result = json.loads(out)
    source = tok.encode(prompt).ids
    assert result["prompt_tokens"] == len(source)
    expected = _hf_generate(hf, source, **settings)
    assert result["token_ids"] == expected  # both stop at EOS (kept)


def test_a_sliding_window_t5_cannot_wrap_is_a_one_line_error(cli, model_dir):
    path, hf, _ = model_dir
    code, out, err = cli(["generate", "--model", str(path), "--prompt", "the cat", "-n", "12", "--json",
                          "--precision", "fp32", "--cache", "sliding", "--cache-window", "8", "--attention-sinks", "2"])
    if hf.config.model_type == "t5":  # relative position bias over every past token: the ring cannot wrap
        assert code == 2 and out == "" and "--cache sliding with T5's relative position bias needs --cache-window >= 13" in err
    else:
        assert code == 0 and len(json.loads(out)["token_ids"]) >= 1
