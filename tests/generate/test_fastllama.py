"""FastLlama computes what transformers' Llama computes: logits compared on tiny models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from melodyflowd.generate.fastllama import FastLlama
from tests.support.tiny_model import build_tiny_model


@pytest.mark.parametrize("pack", ["packed", "plain"])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_prefill_and_steps_match_transformers(tmp_path, kv_heads, pack, monkeypatch):
    from melodyflowd.generate import fastllama

    if pack == "plain":     # F.linear everywhere, as under an untested torch or no oneDNN
        monkeypatch.setattr(fastllama._Linear, "PACK", fastllama._packing("2.99.0"))
        assert fastllama._Linear.PACK == "none"
    directory = build_tiny_model(tmp_path / "m", seed=3)
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    if kv_heads != model.config.num_key_value_heads:   # rebuild with plain multi-head
        model.config.num_key_value_heads = kv_heads
        torch.manual_seed(4)
        model = type(model)(model.config)
    model.eval()
    assert FastLlama.supports(model)
    fast = FastLlama(model)
    fast.use_matmul("fp32")             # float32 products: the same sums as transformers
    fast.new_cache(3, 40)
    ids = torch.randint(4, model.config.vocab_size, (3, 30), generator=torch.Generator()
                        .manual_seed(0))
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        got = fast.forward(ids[:, :10], 0)
        assert torch.allclose(got, reference[:, 9], atol=1e-5)
        for t in range(10, 30):
            got = fast.forward(ids[:, t:t + 1], t)
            assert torch.allclose(got, reference[:, t], atol=1e-5), t
        # a new prefill overwrites the cache (the sliding window re-read)
        got = fast.forward(ids[:, 5:25], 0)
        again = model(input_ids=ids[:, 5:25]).logits[:, -1]
        assert torch.allclose(got, again, atol=1e-5)


def test_other_architectures_are_left_to_transformers():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50))
    assert not FastLlama.supports(model)


def test_cache_bounds_are_checked(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"),
                                                 use_safetensors=True).eval()
    fast = FastLlama(model)
    fast.new_cache(1, 8)
    with pytest.raises(ValueError, match="beyond"):
        fast.forward(torch.ones(1, 9, dtype=torch.long), 0)
    fast.forward(torch.ones(1, 4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="position 0"):
        fast.forward(torch.ones(1, 2, dtype=torch.long), 4)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("rows", [1, 7, 16, 40])
def test_packed_linear_computes_what_f_linear_computes(rows, bf16):
    """The weights packed for oneDNN / MKL (where torch has them) give F.linear's products;
    in bfloat16 to bfloat16's precision (inputs and weights rounded to 8 bits)."""
    import torch.nn.functional as F

    from melodyflowd.generate.fastllama import _Linear

    if bf16 and not _bf16_available():
        pytest.skip("torch has no oneDNN bfloat16 products here")
    gen = torch.Generator().manual_seed(rows)
    for out_f, in_f in ((576, 192), (192, 576), (50, 32)):
        weight = torch.randn(out_f, in_f, generator=gen)
        x = torch.randn(rows, 1, in_f, generator=gen)
        linear = _Linear(weight, bf16=bf16)
        got = linear(x)
        want = F.linear(x, weight)
        assert got.shape == (rows, 1, out_f) and got.dtype == torch.float32
        other = torch.randn(rows, 1, out_f, generator=gen)
        pairs = [(got, want), (linear.add(x, other), want + other),
                 (linear.mul(x, other), want * other), (linear.silu(x), F.silu(want))]
        for value, reference in pairs:
            if not bf16:          # the same sums in another order
                assert torch.allclose(value, reference, rtol=1e-5, atol=1e-4)
            else:                 # inputs and weights rounded to 8 bits: ~0.4 % a term
                assert float((value - reference).abs().max()) <= \
                    0.01 * float(reference.abs().max())
        if bf16:
            assert not torch.equal(got, want)


def _bf16_available() -> bool:
    from melodyflowd.generate.fastllama import _Linear

    return _Linear(torch.ones(4, 4), bf16=True).kind == "mkldnn-bf16"


@pytest.mark.skipif(not _bf16_available(), reason="torch has no oneDNN bfloat16 products here")
def test_bf16_products_stay_close_to_float32(tmp_path):
    """bfloat16 matrix products (the default where the CPU has them) move the next-token
    distribution very little: checked over a prefill and 20 decoding steps."""
    from melodyflowd.generate.fastllama import _Linear

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=3),
                                                 use_safetensors=True).eval()
    ids = torch.randint(4, model.config.vocab_size, (3, 30),
                        generator=torch.Generator().manual_seed(1))
    logits = {}
    for kind in ("fp32", "bf16"):
        fast = FastLlama(model)
        fast.use_matmul(kind)
        fast.new_cache(3, 40)
        steps = [fast.forward(ids[:, :10], 0)]
        steps += [fast.forward(ids[:, t:t + 1], t) for t in range(10, 30)]
        logits[kind] = torch.stack(steps)
        want_kind = "mkldnn-bf16" if kind == "bf16" else _Linear.PACK
        assert all(lin.kind == want_kind for layer in fast._linears for lin in layer)
    exact, rounded = logits["fp32"].log_softmax(-1), logits["bf16"].log_softmax(-1)
    assert not torch.equal(exact, rounded)               # the products did change
    kl = (exact.exp() * (exact - rounded)).sum(-1)
    assert float(kl.max()) < 1e-3
    assert float((exact - rounded).abs().max()) < 0.1


def test_matmul_kind_comes_from_the_environment(monkeypatch):
    from melodyflowd.errors import UserError
    from melodyflowd.generate import fastllama

    monkeypatch.setenv("MELODYFLOW_MATMUL", "fp32")
    assert fastllama.resolve_matmul() == "fp32"
    assert fastllama.resolve_matmul("bf16") == "bf16"      # an explicit kind wins
    monkeypatch.setenv("MELODYFLOW_MATMUL", "auto")
    native = fastllama.native_bf16() and fastllama._Linear.PACK == "mkldnn"
    assert fastllama.resolve_matmul() == ("bf16" if native else "fp32")
    monkeypatch.setenv("MELODYFLOW_MATMUL", "fp16")
    with pytest.raises(UserError, match="fp16.*accepted: auto, bf16, fp32"):
        fastllama.resolve_matmul()


def test_cache_grows_and_drops_rows_without_changing_logits(tmp_path):
    """The cache grows in GROW-position steps and select() keeps rows: decoding across
    several growths and a row drop still gives transformers' logits."""
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=2),
                                                 use_safetensors=True).eval()
    n = 2 * FastLlama.GROW + 20
    ids = torch.randint(4, model.config.vocab_size, (3, n),
                        generator=torch.Generator().manual_seed(5))
    fast = FastLlama(model)
    fast.use_matmul("fp32")
    fast.new_cache(3, n)
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        assert torch.allclose(fast.forward(ids[:, :5], 0), reference[:, 4], atol=1e-5)
        assert fast.k_cache.shape[3] < n                 # not all allocated at once
        rows = [0, 1, 2]
        for t in range(5, n):
            if t == FastLlama.GROW + 3:
                rows = [0, 2]
                fast.select(rows, t)                     # row 1 is done
            got = fast.forward(ids[rows, t:t + 1], t)
            assert torch.allclose(got, reference[rows, t], atol=1e-5), t
        assert fast.k_cache.shape[3] == n and fast.k_cache.shape[1] == 2


def _decoder(model, matmul: str, compiled: bool, rows: int, length: int) -> FastLlama:
    fast = FastLlama(model)
    fast.use_matmul(matmul)
    fast.use_attention(compiled)
    fast.new_cache(rows, length)
    return fast


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_compiled_attention_matches_torch_attention(tmp_path, kv_heads):
    """The compiled one-token step (kernels.py: norms, rotary, cache write, attention) gives
    the logits of torch's operations, with grouped-query heads too, across a cache growth
    and a row drop; and the cache holds the same K and V afterwards."""
    from melodyflowd.generate import kernels

    assert kernels.load() is not None, "numba is a dependency: the kernels must compile"
    directory = build_tiny_model(tmp_path / "m", seed=6)
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    if kv_heads != model.config.num_key_value_heads:
        model.config.num_key_value_heads = kv_heads
        torch.manual_seed(7)
        model = type(model)(model.config)
    model.eval()
    n = FastLlama.GROW + 30
    ids = torch.randint(4, model.config.vocab_size, (4, n),
                        generator=torch.Generator().manual_seed(8))
    runs = {}
    for compiled in (False, True):
        fast = _decoder(model, "fp32", compiled, 4, n)
        rows = [0, 1, 2, 3]
        logits = [fast.forward(ids[:, :6], 0)]
        for t in range(6, n):
            if t == 40:
                rows = [0, 3]
                fast.select(rows, t)
            logits.append(fast.forward(ids[rows, t:t + 1], t)[[0, -1]])
        runs[compiled] = (logits, fast.k_cache[:, :, :, :n].clone(),
                          fast.v_cache[:, :, :, :n].clone())
    for want, got in zip(runs[False][0], runs[True][0], strict=True):
        assert torch.allclose(want, got, atol=1e-5)
    assert torch.allclose(runs[False][1], runs[True][1], atol=1e-6)
    assert torch.allclose(runs[False][2], runs[True][2], atol=1e-6)
    # and both are transformers' numbers
    with torch.inference_mode():
        reference = model(input_ids=ids[[0, 3]]).logits
    assert torch.allclose(runs[True][0][-1], reference[:, -1], atol=1e-5)


@pytest.mark.skipif(not _bf16_available(), reason="torch has no oneDNN bfloat16 products here")
def test_compiled_bf16_step_keeps_a_bf16_cache_close_to_torch(tmp_path):
    """With bfloat16 products the compiled step keeps K and V in bfloat16 too: its logits
    stay within bfloat16's reach of torch's steps (float32 cache) over 40 positions."""
    from melodyflowd.generate import kernels

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=9),
                                                 use_safetensors=True).eval()
    ids = torch.randint(4, model.config.vocab_size, (3, 48),
                        generator=torch.Generator().manual_seed(10))
    logits = {}
    for compiled in (False, True):
        fast = _decoder(model, "bf16", compiled, 3, 48)
        assert fast.kv_dtype == (torch.bfloat16 if compiled else torch.float32)
        steps = [fast.forward(ids[:, :8], 0)]
        steps += [fast.forward(ids[:, t:t + 1], t) for t in range(8, 48)]
        logits[compiled] = torch.stack(steps).log_softmax(-1)
    assert kernels.load() is not None
    exact, compiled = logits[False], logits[True]
    assert not torch.equal(exact, compiled)              # the cache's rounding shows
    kl = (exact.exp() * (exact - compiled)).sum(-1)
    assert float(kl.max()) < 1e-3
    assert float((exact - compiled).abs().max()) < 0.1


def test_bf16_bits_round_to_nearest_even_as_torch_does():
    """kernels.py writes bfloat16 exactly as torch rounds float32 to it (ties to even), and
    reads it back exactly: V goes into a bfloat16 cache unchanged by any arithmetic."""
    import numpy as np

    from melodyflowd.generate import kernels

    k = kernels.load()
    heads, hd = 2, 8
    qkv = torch.randn(3, 3 * heads * hd, generator=torch.Generator().manual_seed(11)) * 100
    v = qkv[:, 2 * heads * hd:]
    v[0, :5] = torch.tensor([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -0.0, 3.0e38, -1.0e-40])
    k_cache = torch.zeros(3, heads, 4, hd, dtype=torch.bfloat16)
    v_cache = torch.zeros(3, heads, 4, hd, dtype=torch.bfloat16)
    out = torch.empty(3, heads * hd, dtype=torch.bfloat16)
    table = np.ones(hd, np.float32)
    k.attend(qkv.numpy(), table, 0 * table, kernels.bits(k_cache), kernels.bits(v_cache), 2,
             kernels.bits(out), heads, heads, np.float32(1.0))
    want = v.reshape(3, heads, hd).to(torch.bfloat16)
    assert torch.equal(v_cache[:, :, 2].view(torch.int16), want.view(torch.int16))
    # cos 1, sin 0: K is the key part, rounded the same way
    assert torch.equal(k_cache[:, :, 2], qkv[:, heads * hd:2 * heads * hd]
                       .reshape(3, heads, hd).to(torch.bfloat16))
    # attention over positions 0-2, of which 0 and 1 hold zeros: read back and averaged
    expected = torch.nn.functional.scaled_dot_product_attention(
        (qkv[:, :heads * hd].reshape(3, heads, 1, hd)), k_cache[:, :, :3].float(),
        v_cache[:, :, :3].float(), scale=1.0)
    assert torch.allclose(out.float(), expected.reshape(3, -1).to(torch.bfloat16).float(),
                          rtol=2 ** -7, atol=1e-3)


def test_without_numba_the_step_falls_back_to_torch(tmp_path, monkeypatch, caplog):
    """numba missing (or its loops failing to compile): one warning, then torch's
    operations and a float32 cache, with the same logits as transformers."""
    import sys

    import melodyflowd.generate
    from melodyflowd.generate import kernels

    monkeypatch.setattr(kernels, "_KERNELS", None)
    monkeypatch.setattr(kernels, "_FAILED", False)
    monkeypatch.setattr(kernels, "_WARM", set())
    monkeypatch.setitem(sys.modules, "melodyflowd.generate.kernels_numba", None)  # unimportable
    monkeypatch.delattr(melodyflowd.generate, "kernels_numba", raising=False)
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=12),
                                                 use_safetensors=True).eval()
    ids = torch.randint(4, model.config.vocab_size, (2, 20),
                        generator=torch.Generator().manual_seed(13))
    with caplog.at_level("WARNING"):
        fast = _decoder(model, "bf16", True, 2, 20)
    assert "compiled decoding kernels unavailable" in caplog.text
    assert fast.kv_dtype == torch.float32
    assert fast.describe().endswith("torch's operations between them")
    fast.use_matmul("fp32")
    fast.new_cache(2, 20)
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        fast.forward(ids[:, :4], 0)
        for t in range(4, 20):
            assert torch.allclose(fast.forward(ids[:, t:t + 1], t), reference[:, t], atol=1e-5)
    assert kernels.load() is None                 # and it does not try again


def test_describe_says_how_steps_run(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"),
                                                 use_safetensors=True).eval()
    fast = FastLlama(model)
    fast.use_matmul("fp32")
    assert fast.describe() == "fp32 products, compiled loops between them"
    fast.use_attention(False)
    assert fast.describe() == "fp32 products, torch's operations between them"


def test_attention_kind_comes_from_the_environment(monkeypatch, tmp_path):
    """MELODYFLOW_ATTENTION is read by the config's environment() only; a FastLlama starts
    with what it says, and kernels.load() gives the loops to whoever asks."""
    from melodyflowd.errors import UserError
    from melodyflowd.generate import kernels
    from melodyflowd.generate.environment import environment

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m"),
                                                 use_safetensors=True).eval()
    monkeypatch.setenv("MELODYFLOW_ATTENTION", "torch")
    assert environment().attention == "torch"
    assert not FastLlama(model).compiled_attention
    assert kernels.load() is not None             # the kernels do not read the environment
    monkeypatch.setenv("MELODYFLOW_ATTENTION", "auto")
    assert FastLlama(model).compiled_attention
    monkeypatch.setenv("MELODYFLOW_ATTENTION", "flash")
    with pytest.raises(UserError, match="flash.*accepted: auto, torch"):
        environment()


def test_private_torch_ops_only_under_the_tested_torch(tmp_path, monkeypatch):
    """torch.ops.mkldnn / mkl packing only under a torch release it was tested with
    (TESTED_TORCH); under another the products are F.linear, and auto products are
    float32 (bfloat16 ones need oneDNN's)."""
    from melodyflowd.generate import fastllama

    assert fastllama._packing("2.99.0") == "none" == fastllama._packing("3.0.0+cpu")
    assert fastllama._packing(fastllama.TESTED_TORCH[0] + ".0+cpu") == fastllama._Linear.PACK
    monkeypatch.setattr(fastllama._Linear, "PACK", fastllama._packing("2.99.0"))
    assert fastllama.resolve_matmul("auto") == "fp32"
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=5),
                                                 use_safetensors=True).eval()
    fast = FastLlama(model)
    fast.use_matmul("auto")
    fast.new_cache(2, 12)
    ids = torch.randint(4, model.config.vocab_size, (2, 12),
                        generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        assert torch.allclose(fast.forward(ids[:, :4], 0), reference[:, 3], atol=1e-5)
        for t in range(4, 12):
            assert torch.allclose(fast.forward(ids[:, t:t + 1], t), reference[:, t], atol=1e-5)
    assert {lin.kind for layer in fast._linears for lin in layer} == {"none"}


KERNEL_BITS = """
import hashlib
import torch
from melodyflowd.generate.model import load_model
fast = load_model(None).fast_forward         # the embedded model, as the generator runs it
ids = torch.randint(4, 700, (16, 40), generator=torch.Generator().manual_seed(0))
digest = hashlib.sha256()
for kind in ("bf16", "fp32"):
    fast.use_matmul(kind)
    fast.new_cache(16, 64)
    with torch.inference_mode():
        fast.forward(ids[:, :5], 0)
        for t in range(5, 40):
            digest.update(fast.forward(ids[:, t:t + 1], t).numpy().tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_kernels_give_the_same_bits_compiled_fresh_or_loaded_from_numbas_cache(tmp_path):
    """The same seed must give the same bank in every process: a process that compiles the
    kernels and one that loads them from numba's disk cache compute the same bits."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    env.pop("MELODYFLOW_ATTENTION", None)
    runs = [subprocess.run([sys.executable, "-c", KERNEL_BITS], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert any((tmp_path / "numba").rglob("*.nbi")), "the first run wrote numba's cache"
    assert runs[0].stdout == runs[1].stdout
