"""Encoder-decoders (T5, BART) decode through the same loop as decoders: identical ids to transformers' generate."""

from __future__ import annotations

import pytest
import torch

from llmkit.errors import LlmkitError
from llmkit.generate.cache import CacheConfig
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import decode_batch, decode_tokens, token_stream
from llmkit.generate.search import beam_search, contrastive_tokens
from llmkit.generate.speculative import make_draft

SOURCES = ([5, 9, 13, 17, 4], [40, 41, 3, 7, 22, 30, 11, 4], [11, 4])  # no special ids (0, 1, 2)
NEW = 12
# plain, and with the processors that read the decoder's ids (tiny random models repeat themselves otherwise)
SETTINGS = [{}, {"repetition_penalty": 1.5}, {"no_repeat_ngram_size": 2}]


def _tiny(family: str):
    """A tiny random transformers T5 / BART (matrices drawn large so the argmaxes vary)."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if family == "t5":
        config = T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=20,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                          decoder_start_token_id=0)  # as the published T5 config.json files say
        model, std = T5ForConditionalGeneration(config), 0.3
    else:
        config = BartConfig(vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                            max_position_embeddings=64)
        model, std = BartForConditionalGeneration(config), 0.5
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model.eval()


@pytest.fixture(scope="session", params=["t5", "bart"])
def encdec(request, tmp_path_factory):
    """(transformers model, llmkit's model loaded from its save_pretrained directory)."""
    from llmkit.load import load

    hf = _tiny(request.param)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path, safe_serialization=True)
    return hf, load(path).model


def _hf_generate(hf, source: list[int], **settings) -> list[int]:
    """transformers' new tokens (the decoder start token dropped)."""
    from transformers import GenerationConfig as HFConfig

    c = hf.generation_config  # transformers 5 keeps the start / EOS ids here
    config = HFConfig(max_new_tokens=NEW, do_sample=False, decoder_start_token_id=c.decoder_start_token_id,
                      pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
                      forced_eos_token_id=c.forced_eos_token_id, **settings)
    with torch.no_grad():
        return hf.generate(torch.tensor([source]), generation_config=config)[0, 1:].tolist()


def _ours_config(hf, **settings) -> GenerationConfig:
    c = hf.generation_config
    return GenerationConfig(max_new_tokens=NEW, eos_ids=(c.eos_token_id,), forced_eos_token_id=c.forced_eos_token_id,
                            **settings)


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def test_decoder_start_token_is_transformers(encdec):
    from llmkit.generate.loop import decoder_start_id

    hf, ours = encdec
    assert decoder_start_id(ours.spec) == hf.generation_config.decoder_start_token_id


@pytest.mark.parametrize("settings", SETTINGS)
def test_greedy_equals_transformers(encdec, settings):
    hf, ours = encdec
    config = _ours_config(hf, **settings)
    for source in SOURCES:
        got = _until_eos(list(decode_tokens(ours, source, config)), hf.generation_config.eos_token_id)
        assert got == _hf_generate(hf, source, num_beams=1, **settings)


@pytest.mark.parametrize("settings", SETTINGS)
def test_beam_search_equals_transformers(encdec, settings):
    hf, ours = encdec
    config = _ours_config(hf, num_beams=3, **settings)
    for source in SOURCES:
        best, _ = beam_search(ours, source, config, (hf.generation_config.eos_token_id,))[0]
        assert best == _hf_generate(hf, source, num_beams=3, **settings)


def test_batched_sources_of_different_lengths_equal_transformers(encdec):
    hf, ours = encdec
    rows = decode_batch(ours, list(SOURCES), _ours_config(hf), (hf.generation_config.eos_token_id,))
    assert rows == [_hf_generate(hf, s, num_beams=1) for s in SOURCES]


def _contrastive_reference(hf, source: list[int], k: int, alpha: float) -> list[int]:
    """Su et al. 2022 without a cache on transformers' model: every candidate re-run in full, its last decoder
    hidden state compared by cosine with those of every earlier decoder token."""
    src, out = torch.tensor([source]), [hf.generation_config.decoder_start_token_id]
    with torch.no_grad():
        for _ in range(NEW):
            run = hf(input_ids=src, decoder_input_ids=torch.tensor([out]), output_hidden_states=True)
            context = torch.nn.functional.normalize(run.decoder_hidden_states[-1][0], dim=-1)  # [t, d]
            probs, ids = torch.softmax(run.logits[0, -1], dim=-1).topk(k)
            scores = []
            for p, v in zip(probs.tolist(), ids.tolist()):
                h = hf(input_ids=src, decoder_input_ids=torch.tensor([out + [v]]), output_hidden_states=True)
                h_v = torch.nn.functional.normalize(h.decoder_hidden_states[-1][0, -1], dim=-1)
                scores.append((1 - alpha) * p - alpha * float((context @ h_v).max()))
            out.append(int(ids[max(range(k), key=scores.__getitem__)]))
    return out[1:]


def test_contrastive_search_equals_the_reference(encdec):
    hf, ours = encdec
    config = GenerationConfig(max_new_tokens=NEW, penalty_alpha=0.6, top_k=4)
    for source in SOURCES[:2]:
        assert list(contrastive_tokens(ours, source, config)) == _contrastive_reference(hf, source, 4, 0.6)


def test_speculative_greedy_equals_transformers(encdec):
    hf, ours = encdec
    draft = make_draft(ours, "layers:1")
    for source in SOURCES:
        got = list(token_stream(ours, source, _ours_config(hf, num_assistant_tokens=3), draft, CacheConfig()))
        assert _until_eos(got, hf.generation_config.eos_token_id) == _hf_generate(hf, source, num_beams=1)


INT8_BOUND = 5e-2  # int8 KV: max |logit difference| / max |logit|, test_cache.py's bound (measured here: see below)


def _forced_logits(ours, source: list[int], tokens: list[int], cache_config: CacheConfig) -> torch.Tensor:
    """Decoder logits [steps, vocab] of the start token then ``tokens``, fed one by one through a cache of that kind."""
    from llmkit.generate.cache import make_cache
    from llmkit.generate.loop import decoder_prompts

    bound, (start,) = decoder_prompts(ours, [source])
    cache = make_cache(cache_config, ours.spec, 1, len(start) + len(tokens), torch.float32)
    with torch.inference_mode():
        return torch.cat([bound(torch.tensor([[t]]), cache=cache, last_only=True)[0] for t in start + tokens])


def test_cache_kinds_decode_encoder_decoders(encdec):
    hf, ours = encdec
    tokens = list(decode_tokens(ours, SOURCES[1], _ours_config(hf)))
    plain = _forced_logits(ours, SOURCES[1], tokens, CacheConfig())
    assert torch.allclose(_forced_logits(ours, SOURCES[1], tokens, CacheConfig("paged", block_size=4)), plain, atol=1e-5)
    int8 = _forced_logits(ours, SOURCES[1], tokens, CacheConfig("int8"))
    assert float((int8 - plain).abs().max() / plain.abs().max()) <= INT8_BOUND  # measured 2.6e-2 (T5), 2.8e-2 (BART)
    assert list(decode_tokens(ours, SOURCES[1], _ours_config(hf), CacheConfig("paged", block_size=4))) == tokens
    sliding = CacheConfig("sliding", window=8, sinks=2)  # the start token + 7 new tokens fill it
    if ours.spec.position == "t5":
        with pytest.raises(LlmkitError, match="sliding with T5's relative position bias needs --cache-window >= 13"):
            list(decode_tokens(ours, SOURCES[1], _ours_config(hf), sliding))
    else:  # BART's learned positions: StreamingLLM as in a decoder, exact until the ring wraps
        assert list(decode_tokens(ours, SOURCES[1], _ours_config(hf), sliding))[:8] == tokens[:8]


def test_empty_and_too_long_sources_are_clear_errors(encdec):
    _, ours = encdec
    with pytest.raises(LlmkitError, match="the prompt is empty"):
        list(decode_tokens(ours, [], GenerationConfig(max_new_tokens=2)))
    if ours.spec.position == "learned":  # BART's learned encoder positions end at max_positions
        with pytest.raises(LlmkitError, match="the encoder takes at most"):
            list(decode_tokens(ours, [5] * (ours.spec.max_positions + 1), GenerationConfig(max_new_tokens=2)))
