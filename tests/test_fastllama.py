"""FastLlama computes what transformers' Llama computes: logits compared on tiny models."""

from __future__ import annotations

import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM

from melodyflowd.generate.fastllama import FastLlama


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_prefill_and_steps_match_transformers(tmp_path, kv_heads):
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
