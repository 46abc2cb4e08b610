"""The one-call C decode step (nn/fast.py) against transformers and against llmkit's own module path."""

from __future__ import annotations

import pytest
import torch

from llmkit.generate.cache import CacheConfig, ContiguousKVCache, make_cache
from llmkit.load import load
from llmkit.nn import Transformer, fast
from llmkit.spec import ModelSpec


def decode(model, prompt: list[int], steps: int, cache, force_modules: bool = False, fed: list | None = None):
    """Logits [steps, vocab] of greedy decoding after ``prompt``, one per token fed (appended to ``fed``);
    force_modules: a no-op forward hook turns the C step off."""
    handle = model.norm.register_forward_hook(lambda *_: None) if force_modules else None
    out = []
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), cache=cache)[:, -1]
        for _ in range(steps):
            token = logits.argmax(-1, keepdim=True)  # [1, 1]
            if fed is not None:
                fed.append(int(token))
            logits = model(token, cache=cache)[:, -1]
            out.append(logits[0])
    if handle is not None:
        handle.remove()
    return torch.stack(out)


def test_the_c_step_equals_transformers_on_tiny_llama_and_qwen2(tiny_pair):
    hf, model = tiny_pair
    prompt = [3, 17, 42, 5, 99]
    cache, fed = ContiguousKVCache(model.spec, 1, 32), []
    got = decode(model, prompt, 8, cache, fed=fed)
    assert fast.PLANS.get(model) is not None and fast.PLANS[model].cache() is cache  # the C step ran
    with torch.no_grad():
        expected = hf(torch.tensor([prompt + fed])).logits[0, len(prompt):]  # at each fed token, no cache
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_long_prompt_through_the_c_step_equals_transformers(tiny_pair):
    """40 prompt rows: the blocked products and the tiled attention (tiles of 6 queries of one KV head: the
    group's heads of 3 rows (GQA), or of 1.5 rows (MQA's 4 heads)), then 6 decoding steps."""
    hf, model = tiny_pair
    prompt = [(i * 37) % 128 for i in range(40)]
    cache, fed = ContiguousKVCache(model.spec, 1, 64), []
    got = decode(model, prompt, 6, cache, fed=fed)
    assert fast.PLANS[model].cache() is cache
    with torch.no_grad():
        expected = hf(torch.tensor([prompt + fed])).logits[0, len(prompt):]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def sliding_spec() -> ModelSpec:
    return ModelSpec(name="tiny-mistral", family="decoder", d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                     vocab_size=96, d_ff=128, ffn_kind="swiglu", activation="silu", position="rope", norm="rmsnorm",
                     norm_eps=1e-5, max_positions=64, sliding_window=4, qkv_bias=True)


def test_the_c_step_keeps_the_sliding_window_and_biases():
    torch.manual_seed(0)
    model = Transformer(sliding_spec()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    for prompt in ([1, 2, 3], list(range(1, 21))):  # 20 rows at once: each row's own window
        c_step = decode(model, prompt, 12, ContiguousKVCache(model.spec, 1, 40))  # the window of 4 slides
        modules = decode(model, prompt, 12, ContiguousKVCache(model.spec, 1, 40), force_modules=True)
        torch.testing.assert_close(c_step, modules, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return {precision: load(smollm2_gguf, precision).model for precision in ("fp32", "bf16", "int4")}


def test_the_c_step_equals_the_module_path_on_smollm2(smollm2):
    prompt = list(range(200, 240))
    for precision, bound in (("fp32", 1e-5), ("int4", 1e-3)):
        model = smollm2[precision]
        c_step = decode(model, prompt, 16, ContiguousKVCache(model.spec, 1, 64))
        modules = decode(model, prompt, 16, ContiguousKVCache(model.spec, 1, 64), force_modules=True)
        assert torch.equal(c_step.argmax(-1), modules.argmax(-1)), precision
        assert (c_step - modules).abs().max() <= bound * modules.abs().max(), precision


@pytest.mark.parametrize("kind", ["sliding", "int8", "paged"])
def test_other_caches_take_the_module_path(smollm2, kind):
    model = smollm2["fp32"]
    cache = make_cache(CacheConfig(kind=kind, window=64), model.spec, 1, 64, torch.float32)
    assert fast.plan_for(model, cache) is None


def test_batches_gradients_and_hooks_take_the_module_path(smollm2):
    model = smollm2["fp32"]
    two = ContiguousKVCache(model.spec, 2, 16)
    with torch.inference_mode():
        model(torch.tensor([[1, 2], [3, 4]]), cache=two)
        assert fast.decode_step(model, torch.tensor([[3]]), two) is None  # a batch: not the one-sequence step
    one = ContiguousKVCache(model.spec, 1, 16)
    with torch.inference_mode():
        model(torch.tensor([[1, 2]]), cache=one)
    with torch.enable_grad():
        assert fast.decode_step(model, torch.tensor([[3]]), one) is None
    handle = model.blocks[3].ffn.register_forward_hook(lambda *_: None)
    with torch.inference_mode():
        assert fast.decode_step(model, torch.tensor([[3]]), one) is None
    handle.remove()


def batched_logits(model, prompts: list[list[int]], steps: int, holes: bool = False, force_modules: bool = False):
    """Logits [steps, batch, vocab] of greedy decoding a left-padded batch (``holes``: one more padded slot inside
    row 0, as a mask may have); force_modules: a no-op hook turns the C step off."""
    longest = max(map(len, prompts))
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    if holes:
        mask[0, -2] = 0
    handle = model.norm.register_forward_hook(lambda *_: None) if force_modules else None
    cache, out = ContiguousKVCache(model.spec, len(prompts), longest + steps), []
    with torch.inference_mode():
        logits = model(ids, attention_mask=mask, cache=cache)[:, -1]
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            logits = model(logits.argmax(-1, keepdim=True), attention_mask=mask, cache=cache)[:, -1]
            out.append(logits)
    if handle is not None:
        handle.remove()
    return torch.stack(out)


@pytest.mark.parametrize("holes", [False, True])
def test_the_batched_c_step_equals_the_module_path(tiny_pair, holes):
    """One new token per row of a left-padded batch in one C call: the module path's logits (positions count
    each row's real tokens; padded keys are not seen), on a tiny Llama/Qwen2 and a sliding-window model."""
    torch.manual_seed(0)
    sliding = Transformer(sliding_spec()).eval()
    with torch.no_grad():
        for p in sliding.parameters():
            p.normal_(0, 0.2) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    prompts = [[3, 17, 42, 5, 9], [7, 8], [11, 12, 13]]
    for model in (tiny_pair[1], sliding):
        c_step = batched_logits(model, prompts, 8, holes)
        assert fast.PLANS[model].batch == 3  # the batched C step ran
        modules = batched_logits(model, prompts, 8, holes, force_modules=True)
        torch.testing.assert_close(c_step, modules, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_the_batched_c_step_equals_the_module_path_on_smollm2(smollm2, precision):
    model = smollm2[precision]
    prompts = [list(range(200, 240)), list(range(500, 510)), list(range(900, 925))]
    c_step, modules = batched_logits(model, prompts, 6), batched_logits(model, prompts, 6, force_modules=True)
    assert fast.PLANS[model].batch == 3
    assert torch.equal(c_step.argmax(-1), modules.argmax(-1))
    bound = 1e-5 if precision == "fp32" else 1e-3
    assert (c_step - modules).abs().max() <= bound * modules.abs().max()


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_several_tokens_at_once_equal_the_module_path(smollm2, precision):
    """A speculative verification or a short prompt: 9 new tokens in one C call, each seeing those before it."""
    model = smollm2[precision]
    prompt, new = torch.tensor([list(range(300, 340))]), torch.tensor([[11, 400, 7, 5000, 12, 9, 88, 1000, 3]])
    logits = {}
    for path in ("c", "modules"):
        cache = ContiguousKVCache(model.spec, 1, 64)
        handle = model.norm.register_forward_hook(lambda *_: None) if path == "modules" else None
        with torch.inference_mode():
            model(prompt, cache=cache)
            logits[path] = model(new, cache=cache)[0]  # [9, vocab]
            last = model(new[:, :4], cache=ContiguousKVCache(model.spec, 1, 8), last_only=True)[0, -1]
        if handle is not None:
            handle.remove()
        assert cache.length == 49
        logits[path + "-last"] = last
    bound = 1e-5 if precision == "fp32" else 1e-3
    assert (logits["c"] - logits["modules"]).abs().max() <= bound * logits["modules"].abs().max()
    assert (logits["c-last"] - logits["modules-last"]).abs().max() <= bound * logits["modules-last"].abs().max()


@pytest.mark.parametrize("precision", ["bf16", "int4"])
def test_a_long_prompt_with_converted_weights_equals_the_module_path(smollm2, precision):
    """bfloat16 and quantized weights: a prompt of 17 rows and more runs through the C step's blocked products on
    the weights converted 48 rows at a time, the float32 products of the dequantized weights that the module path's
    GEMM computes (where the few-row kernels round the activations to int16 per block)."""
    model = smollm2[precision]
    prompt = torch.tensor([[(i * 7919) % 49152 for i in range(200)]])
    got = {}
    for path in ("c", "modules"):
        handle = model.norm.register_forward_hook(lambda *_: None) if path == "modules" else None
        cache = ContiguousKVCache(model.spec, 1, 208)
        with torch.inference_mode():
            got[path] = model(prompt, cache=cache)[0]  # [200, vocab]
        if handle is not None:
            handle.remove()
        else:
            assert fast.PLANS[model].serves(cache)  # the C step ran
    assert ((got["c"] - got["modules"]).abs().amax(-1) <= 1e-4 * got["modules"].abs().amax(-1)).all()
    # logits of the last row alone: the last layer's one row goes through the few-row kernels (quantized weights:
    # activations rounded to int16 per block, ~1e-4 of the largest logit on real text)
    with torch.inference_mode():
        last = fast.decode_step(model, prompt, ContiguousKVCache(model.spec, 1, 208), last_only=True)[0, -1]
    bound = 1e-5 if precision == "bf16" else 1e-3
    assert (last - got["modules"][-1]).abs().max() <= bound * got["modules"][-1].abs().max()


@pytest.mark.parametrize("chunk", [None, 37])
def test_a_long_float32_prompt_equals_the_module_path(smollm2, monkeypatch, chunk):
    """A 300-token prompt through the C step (the blocked products, every row's attention in one pool run, the
    last layer only for the rows asked for), whole or in calls of 37 tokens: the module path's logits, all rows
    or the last alone, and the same keys in the cache."""
    model = smollm2["fp32"]
    if chunk is not None:
        monkeypatch.setattr(fast, "CHUNK_BYTES", chunk * fast.row_bytes(model.spec))
    prompt = torch.tensor([[(i * 7919) % 49152 for i in range(300)]])
    got = {}
    for path in ("c", "modules"):
        handle = model.norm.register_forward_hook(lambda *_: None) if path == "modules" else None
        cache, last_cache = ContiguousKVCache(model.spec, 1, 320), ContiguousKVCache(model.spec, 1, 320)
        with torch.inference_mode():
            all_rows = model(prompt, cache=cache)[0]  # [300, vocab]
            last = model(prompt, cache=last_cache, last_only=True)[0, -1]
        if handle is not None:
            handle.remove()
        else:
            plan = fast.PLANS[model]
            assert plan.serves(last_cache) and (chunk is None or plan.chunk == chunk)
        got[path] = (all_rows, last, cache.contiguous_layout()[0][:, :, :, :300])
    (all_rows, last, keys), modules = got["c"], got["modules"]
    # float32 sums in another order through 30 layers: a row of these scrambled tokens drifts up to ~3e-5 of its
    # largest logit (the last row: ~2e-6), within the 1e-4 the module path keeps to transformers
    assert ((all_rows - modules[0]).abs().amax(-1) <= 1e-4 * modules[0].abs().amax(-1)).all()
    assert (last - modules[1]).abs().max() <= 1e-5 * modules[1].abs().max()
    # the last layer's skipped rows change nothing of the last but its attention's order of sums (one row: per
    # head; 300: in tiles)
    assert (last - all_rows[-1]).abs().max() <= 1e-5 * all_rows[-1].abs().max()
    assert ((keys - modules[2]).abs().amax((1, 2, 3, 4)) <= 1e-4 * modules[2].abs().amax((1, 2, 3, 4))).all()  # per layer
