"""The C kernels against their PyTorch twins (and gguf-py for the GGML block formats).

The kernels must build here: this machine (and CI's) has gcc; a build failure fails these tests
rather than letting every caller fall back to PyTorch unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gguf.quants as gq
import pytest
import torch
from gguf import GGMLQuantizationType

from llmkit import kernels
from llmkit.nn.attention import Mask, attention_reference
from llmkit.nn.position import apply_rope_half

GGUF_TYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_1": GGMLQuantizationType.Q4_1}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_kernels_build_and_load():
    assert kernels.enabled(), "the C kernels did not build: is gcc installed?"
    assert kernels.library().llmkit_kernels_version() >= 2


@pytest.mark.parametrize("fmt", ["f32", "bf16"])
@pytest.mark.parametrize("m, n, k", [(1, 96, 128), (3, 97, 131), (17, 64, 40), (1, 5, 7), (6, 41, 96), (9, 99, 77),
                                     (16, 130, 576)])  # f32, 2 and more rows: passes of at most 6 (16: 6, 5, 5)
def test_float_matvec_equals_torch(fmt, m, n, k):
    w = torch.randn(n, k, generator=gen(0))
    x = torch.randn(m, k, generator=gen(1))
    data = w if fmt == "f32" else w.bfloat16()
    expected = x.double() @ data.double().T
    got = kernels.matvec(data, fmt, x)
    assert got.shape == (m, n)
    bound = k * 2**-24 * (x.abs().double() @ data.abs().double().T) + 1e-7  # float32 sums of k products
    assert ((got.double() - expected).abs() <= bound).all()


def test_matvec_accumulates_into_out():
    w, x = torch.randn(33, 64, generator=gen(0)), torch.randn(2, 64, generator=gen(1))
    out = torch.randn(2, 33, generator=gen(2))
    expected = out + x @ w.T
    kernels.matvec(w, "f32", x, out=out, accumulate=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def int16_error_bound(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """|x W^T - x~ W^T| <= sum_k |W[n, k]| * s_block(k) / 2, s = absmax of x's 32-block / 32767 (cpu.c)."""
    m, k = x.shape
    step = x.abs().reshape(m, k // 32, 32).amax(-1) / 32767  # [m, blocks]
    half_step = step.repeat_interleave(32, dim=1) / 2  # [m, k]
    return half_step @ w.abs().T  # [m, n]


@pytest.mark.parametrize("fmt", ["q8_0", "q4_1"])
@pytest.mark.parametrize("m", [1, 3, 4, 16, 17, 70])  # 17 and more: float32 products of blocks of dequantized rows
def test_quantized_matvec_equals_the_dequantized_product(fmt, m):
    n, k = 45, 256
    w = torch.randn(n, k, generator=gen(0)) * torch.linspace(0.01, 3, n)[:, None]
    x = torch.randn(m, k, generator=gen(1)) * torch.linspace(0.1, 10, k)  # blocks of very different ranges
    blocks = gq.quantize(w.numpy(), GGUF_TYPES[fmt])  # the oracle's bytes, rows of blocks
    dequantized = torch.from_numpy(gq.dequantize(blocks, GGUF_TYPES[fmt])).reshape(n, k)
    got = kernels.matvec(torch.from_numpy(blocks), fmt, x)
    expected = x.double() @ dequantized.double().T
    bound = int16_error_bound(dequantized.double(), x.double()) + 1e-5 * expected.abs() + 1e-5
    assert ((got.double() - expected).abs() <= bound).all()


@pytest.mark.parametrize("fmt", ["q8_0", "q4_1"])
def test_quantized_rows_give_the_same_bits_alone_and_together(fmt):
    """Two activation rows share each unpacked block; a row's result does not depend on its company."""
    w, x = torch.randn(37, 128, generator=gen(0)), torch.randn(5, 128, generator=gen(1))
    blocks = torch.from_numpy(gq.quantize(w.numpy(), GGUF_TYPES[fmt]))
    together = kernels.matvec(blocks, fmt, x)
    alone = torch.cat([kernels.matvec(blocks, fmt, x[i : i + 1]) for i in range(5)])
    assert torch.equal(together, alone)


@pytest.mark.parametrize("m", [2, 7, 16])
def test_float32_rows_give_the_same_bits_alone_and_together(m):
    """A row's float32 dot products sum in one order whatever tile carries it (1 row, or passes of 2-6)."""
    w, x = torch.randn(70, 203, generator=gen(0)), torch.randn(m, 203, generator=gen(1))
    together = kernels.matvec(w, "f32", x)
    alone = torch.cat([kernels.matvec(w, "f32", x[i : i + 1]) for i in range(m)])
    assert torch.equal(together, alone)


def test_quantized_matvec_refuses_rows_that_are_not_whole_blocks():
    with pytest.raises(kernels.KernelError, match="divisible by 32"):
        kernels.matvec(torch.zeros(4, 34, dtype=torch.uint8), "q8_0", torch.zeros(1, 40))


def test_rms_norm_equals_the_formula():
    x, g = torch.randn(5, 7, 576, generator=gen(0)) * 30, torch.randn(576, generator=gen(1))
    expected = x * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5).float() * g
    torch.testing.assert_close(kernels.rms_norm(x, g, 1e-5), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_cos", [1, 2])
@pytest.mark.parametrize("d_rot", [64, 32])  # 32 of 64: partial rotary (Phi-style), the rest untouched
def test_rope_half_in_place_equals_apply_rope_half(batch_cos, d_rot):
    b, h, t, d = 2, 3, 5, 64
    projected = torch.randn(b, t, h * d, generator=gen(0))  # as a projection returns it
    x = projected.view(b, t, h, d).transpose(1, 2)  # [b, h, t, d], strided like Attention.heads
    angles = torch.randn(batch_cos, 1, t, d_rot // 2, generator=gen(1))
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    expected = apply_rope_half(x.clone(), cos, sin)
    out = kernels.rope_half_(x, cos, sin)
    assert out.data_ptr() == x.data_ptr()
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_heads, n_kv, d", [(9, 3, 64), (4, 4, 80), (8, 1, 12), (2, 1, 128)])  # GQA, MHA, MQA
def test_attend_one_equals_the_reference_on_a_cache_view(n_heads, n_kv, d):
    """d of 64 and 128: scores 8 keys at a time and the weighted sum in registers; 80 and 12: the tails."""
    b, max_len, length = 2, 40, 23
    cache_k = torch.randn(b, n_kv, max_len, d, generator=gen(0))  # a preallocated cache, partly filled
    cache_v = torch.randn(b, n_kv, max_len, d, generator=gen(1))
    k, v = cache_k[:, :, :length], cache_v[:, :, :length]
    q = torch.randn(b, 1, n_heads, d, generator=gen(2)).transpose(1, 2)  # [b, heads, 1, d], strided
    expected = attention_reference(q, k, v, Mask())
    torch.testing.assert_close(kernels.attend_one(q, k, v, d**-0.5), expected, rtol=1e-5, atol=1e-5)


def test_attend_one_hides_padding_and_keys_before_the_window():
    b, h, d, length = 2, 4, 32, 12
    q = torch.randn(b, h, 1, d, generator=gen(0))
    k, v = torch.randn(b, 2, length, d, generator=gen(1)), torch.randn(b, 2, length, d, generator=gen(2))
    padding = torch.ones(b, length, dtype=torch.long)
    padding[0, :4] = 0  # row 0 left-padded
    mask = Mask(is_causal=True, past=length - 1, window=5, padding=padding)
    expected = attention_reference(q, k, v, mask)
    got = kernels.attend_one(q, k, v, d**-0.5, start=length - 5, padding=padding)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_the_thread_count():
    w, x = torch.randn(301, 512, generator=gen(0)), torch.randn(2, 512, generator=gen(1))
    blocks = torch.from_numpy(gq.quantize(w.numpy(), GGMLQuantizationType.Q4_1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a session lends the kernels its pool only while PyTorch runs on one thread
    try:
        with kernels.session():
            many = kernels.matvec(w, "f32", x), kernels.matvec(blocks, "q4_1", x)
    finally:
        torch.set_num_threads(threads)
    code = (
        "import torch, sys; torch.set_num_threads(1); from llmkit import kernels; import gguf.quants as gq;"
        "from gguf import GGMLQuantizationType as T; g = lambda s: torch.Generator().manual_seed(s);"
        "w, x = torch.randn(301, 512, generator=g(0)), torch.randn(2, 512, generator=g(1));"
        "b = torch.from_numpy(gq.quantize(w.numpy(), T.Q4_1));"
        "torch.save((kernels.matvec(w, 'f32', x), kernels.matvec(b, 'q4_1', x)), sys.argv[1])"
    )
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"llmkit-one-thread-{os.getpid()}.pt")
    subprocess.run([sys.executable, "-c", code, path], check=True)
    one = torch.load(path)
    os.unlink(path)
    assert torch.equal(many[0], one[0]) and torch.equal(many[1], one[1])  # each row's sum: same order


def test_a_session_pins_the_caller_and_gives_its_cpus_back():
    before = os.sched_getaffinity(0)
    with kernels.session():
        inside = os.sched_getaffinity(0)
        with kernels.session():  # nested: no change
            assert os.sched_getaffinity(0) == inside
    assert os.sched_getaffinity(0) == before
    if torch.get_num_threads() > 1 and len(before) > 1:
        assert len(inside) == 1


def test_a_forked_child_computes_without_the_parents_workers():
    w, x = torch.randn(64, 64, generator=gen(0)), torch.randn(1, 64, generator=gen(1))
    expected = kernels.matvec(w, "f32", x)
    pid = os.fork()
    if pid == 0:  # the child: the pool's threads did not survive the fork
        ok = torch.allclose(kernels.matvec(w, "f32", x), expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_llmkit_kernels_0_turns_them_off():
    code = "from llmkit import kernels; print(kernels.enabled())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LLMKIT_KERNELS": "0"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("n", [13, 1 << 16])  # one thread, and split among the pool's
def test_silu_mul_in_place_equals_torch(n):
    gate, up = torch.randn(n, generator=gen(0)) * 8, torch.randn(n, generator=gen(1))
    expected = torch.nn.functional.silu(gate) * up
    out = kernels.silu_mul_(gate, up)
    assert out.data_ptr() == gate.data_ptr()
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
