"""A lean decoding forward pass for LlamaForCausalLM weights, with a preallocated KV cache.

compose_bank writes a token a step for a small batch. With transformers' own forward the
step cost on a CPU is mostly Python around small matrix products, and the growing
KV cache is copied (torch.cat) at every step - O(length^2) memory traffic. This module
runs the same arithmetic as transformers' Llama (RMSNorm, rotary embeddings, grouped
query attention, SwiGLU; the model's own weights, merged LoRA included) with fused
q/k/v and gate/up products and a cache written in place. It is used only when
`FastLlama.supports(model)`; any other model runs through transformers' forward.
Tests check its logits against transformers' forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class FastLlama:
    def __init__(self, model) -> None:
        cfg = model.config
        base = model.model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = float(cfg.rms_norm_eps)
        self.embed = base.embed_tokens.weight.detach()
        self.head = model.lm_head.weight.detach()
        self.norm = base.norm.weight.detach()
        self.layers = []
        for layer in base.layers:
            att, mlp = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight.detach(),
                torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]).detach(),
                att.o_proj.weight.detach(),
                layer.post_attention_layernorm.weight.detach(),
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(),
                mlp.down_proj.weight.detach(),
            ))
        rotary = base.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().float()
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self.max_positions = int(cfg.max_position_embeddings)
        self._cos = self._sin = None
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    @staticmethod
    def supports(model) -> bool:
        cfg = getattr(model, "config", None)
        if cfg is None or type(model).__name__ != "LlamaForCausalLM":
            return False
        rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        return (getattr(cfg, "hidden_act", "silu") == "silu"
                and not getattr(cfg, "attention_bias", False)
                and not getattr(cfg, "mlp_bias", False)
                and getattr(cfg, "pretraining_tp", 1) == 1
                and rope.get("rope_type", "default") == "default"
                and hasattr(model.model, "rotary_emb")
                and hasattr(model.model.rotary_emb, "inv_freq"))

    def _tables(self, length: int) -> None:
        if self._cos is not None and self._cos.shape[0] >= length:
            return
        positions = torch.arange(length, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self._cos = emb.cos() * self.rope_scale
        self._sin = emb.sin() * self.rope_scale

    def new_cache(self, batch: int, length: int) -> None:
        shape = (len(self.layers), batch, self.n_kv, length, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.embed.dtype)
        self.v_cache = torch.zeros(shape, dtype=self.embed.dtype)
        self._tables(length)

    def select(self, rows: list[int]) -> None:
        """Keep only these batch rows in the cache (rows that finished drop out)."""
        index = torch.tensor(rows, dtype=torch.long)
        self.k_cache = self.k_cache.index_select(1, index)
        self.v_cache = self.v_cache.index_select(1, index)

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Logits of the last position; ids [batch, T] sit at positions start..start+T-1.

        T > 1 only from position 0 (a prefill); then one token a call.
        """
        assert self.k_cache is not None, "call new_cache first"
        batch, length = ids.shape
        end = start + length
        if end > self.k_cache.shape[3]:
            raise ValueError(f"position {end} beyond the cache ({self.k_cache.shape[3]})")
        if length > 1 and start != 0:
            raise ValueError("a multi-token call must start at position 0")
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        cos = self._cos[start:end]
        sin = self._sin[start:end]
        x = F.embedding(ids, self.embed)
        for i, (ln1, wqkv, wo, ln2, wgu, wd) in enumerate(self.layers):
            qkv = F.linear(self._rms(x, ln1), wqkv)
            q, k, v = qkv.split([h * hd, kv * hd, kv * hd], dim=-1)
            q = self._rotate(q.view(batch, length, h, hd).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(batch, length, kv, hd).transpose(1, 2), cos, sin)
            v = v.view(batch, length, kv, hd).transpose(1, 2)
            self.k_cache[i, :, :, start:end] = k
            self.v_cache[i, :, :, start:end] = v
            keys = self.k_cache[i, :, :, :end]
            values = self.v_cache[i, :, :, :end]
            att = F.scaled_dot_product_attention(q, keys, values, is_causal=length > 1,
                                                 enable_gqa=kv != h)
            x = x + F.linear(att.transpose(1, 2).reshape(batch, length, h * hd), wo)
            gate, up = F.linear(self._rms(x, ln2), wgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, wd)
        return F.linear(self._rms(x[:, -1], self.norm), self.head)
