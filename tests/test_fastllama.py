"""FastLlama computes what transformers' Llama computes: logits compared on tiny models."""

from __future__ import annotations

import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM

from melodyflowd.generate.fastllama import FastLlama


@pytest.mark.parametrize("pack", ["packed", "plain"])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_prefill_and_steps_match_transformers(tmp_path, kv_heads, pack, monkeypatch):
    from melodyflowd.generate import fastllama

    if pack == "plain":                 # F.linear everywhere, as where torch has no oneDNN
        monkeypatch.setattr(fastllama._Linear, "PACK", "none")
    directory = build_tiny_model(tmp_path / "m", seed=3)
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    if kv_heads != model.config.num_key_value_heads:   # rebuild with plain multi-head
        model.config.num_key_value_heads = kv_heads
        torch.manual_seed(4)
        model = type(model)(model.config)
    model.eval()
    assert FastLlama.supports(model)
    fast = FastLlama(model)
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


@pytest.mark.parametrize("rows", [1, 7, 16, 40])
def test_packed_linear_computes_what_f_linear_computes(rows):
    """The weights packed for oneDNN / MKL (where torch has them) give F.linear's products."""
    import torch.nn.functional as F

    from melodyflowd.generate.fastllama import _Linear

    gen = torch.Generator().manual_seed(rows)
    for out_f, in_f in ((576, 192), (192, 576), (50, 32)):
        weight = torch.randn(out_f, in_f, generator=gen)
        x = torch.randn(rows, 1, in_f, generator=gen)
        linear = _Linear(weight)
        got = linear(x)
        want = F.linear(x, weight)
        assert got.shape == (rows, 1, out_f)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)
        other = torch.randn(rows, 1, out_f, generator=gen)
        assert torch.allclose(linear.add(x, other), want + other, rtol=1e-5, atol=1e-4)
        assert torch.allclose(linear.mul(x, other), want * other, rtol=1e-5, atol=1e-4)
        assert torch.allclose(linear.silu(x), F.silu(want), rtol=1e-5, atol=1e-4)
