"""A lean decoding forward pass for LlamaForCausalLM weights, with a preallocated KV cache.

compose_bank writes a token a step for a small batch. With transformers' own forward the
step cost on a CPU is mostly Python around small matrix products, and the growing
KV cache is copied (torch.cat) at every step - O(length^2) memory traffic. This module
runs the same arithmetic as transformers' Llama (RMSNorm, rotary embeddings, grouped
query attention, SwiGLU; the model's own weights, merged LoRA included) with a fused q/k/v
product, a cache written in place, and weights packed once for oneDNN (or MKL), with the
residual add, the silu and the gate product fused into the matrix products where oneDNN
does that. It loads straight from config.json + model.safetensors (``from_weights``:
no transformers import) or from a transformers model (``FastLlama(model)``), for any
plain Llama (``config_supported`` / ``FastLlama.supports``); other models run through
transformers' forward. Tests check its logits against transformers' forward.

One-token steps (all of decoding but the first read of the prompt) run the matrix products
in their own type and everything between them (norms, residual adds, rotary embedding, the
cache write, attention) as the compiled loops of kernels.py, where numba has them; else,
and for prefills, torch's operations (``use_attention(False)``, MELODYFLOW_ATTENTION=torch).
Tests compare the two.

The matrix products run in bfloat16 where the CPU multiplies bfloat16 natively (AVX512-BF16
or AMX); so does the KV cache when the compiled loops attend (half the memory to read a
step). The next-token distribution then moves by a KL of about 4e-5 nats on average from
float32 (bench/generate.py measures it on the embedded model). Norms, softmax, sums and the
residual stream stay float32. MELODYFLOW_MATMUL=fp32 (or ``FastLlama.use_matmul("fp32")``)
gives float32 products and cache throughout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from melodyflowd.generate import kernels
from melodyflowd.generate.environment import MATMUL_KINDS, environment

LAYER_KEYS = ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
               "self_attn.v_proj.weight", "self_attn.o_proj.weight",
               "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
               "mlp.down_proj.weight")


def weight_names(cfg: dict) -> set[str]:
    """The safetensors names of the weights this forward reads for a config.json."""
    names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(int(cfg["num_hidden_layers"])):
        names |= {f"model.layers.{i}.{key}" for key in LAYER_KEYS}
    return names


def config_supported(cfg: dict) -> bool:
    """Whether a config.json (as a dict) describes a Llama this forward computes exactly."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    archs = cfg.get("architectures") or ["LlamaForCausalLM"]
    return (cfg.get("model_type") == "llama" and archs == ["LlamaForCausalLM"]
            and cfg.get("hidden_act", "silu") == "silu"
            and not cfg.get("attention_bias", False) and not cfg.get("mlp_bias", False)
            and cfg.get("pretraining_tp", 1) == 1
            and rope.get("rope_type", rope.get("type", "default")) == "default"
            and float(cfg.get("partial_rotary_factor", 1.0) or 1.0) == 1.0
            and isinstance(cfg.get("num_hidden_layers"), int))


def rope_theta(cfg: dict) -> float:
    rope = cfg.get("rope_parameters") or {}
    return float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (else bf16 products are emulated and
    slower than float32 ones)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    except RuntimeError:
        return False


def resolve_matmul(kind: str | None = None) -> str:
    """"bf16" or "fp32" for a requested kind (None: MELODYFLOW_MATMUL, default "auto")."""
    kind = environment().matmul if kind is None else kind
    if kind not in MATMUL_KINDS:
        raise ValueError(f"matmul kind {kind!r}; accepted: {', '.join(MATMUL_KINDS)}")
    if kind == "auto":
        return "bf16" if native_bf16() and _Linear.PACK == "mkldnn" else "fp32"
    return kind


class FastLlama:
    """The forward pass over plain tensors: from a transformers model (FastLlama(model)) or
    straight from config.json + model.safetensors (FastLlama.from_weights)."""

    def __init__(self, model=None, *, config: dict | None = None,
                 weights: dict[str, torch.Tensor] | None = None) -> None:
        if model is not None:
            config = model.config.to_dict()
            weights = {k: v.detach() for k, v in model.state_dict().items()}
            if "lm_head.weight" not in weights:
                weights["lm_head.weight"] = model.lm_head.weight.detach()
            inv_freq = model.model.rotary_emb.inv_freq.detach().float()
            self.rope_scale = float(getattr(model.model.rotary_emb, "attention_scaling", 1.0))
        assert config is not None and weights is not None
        self.n_heads = int(config["num_attention_heads"])
        self.n_kv = int(config.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.n_heads)
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        if model is None:
            half = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
            inv_freq = 1.0 / (rope_theta(config) ** half)
            self.rope_scale = 1.0
        self.embed = weights["model.embed_tokens.weight"]
        self.head = weights["lm_head.weight"]
        self.norm = weights["model.norm.weight"]
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            (ln1, q, k, v, o, ln2, gate, up, down) = (weights[f"model.layers.{i}.{key}"]
                                                      for key in LAYER_KEYS)
            self.layers.append((ln1, torch.cat([q, k, v]), o, ln2, torch.cat([gate, up]),
                                down))
        self.n_params = sum(t.numel() for t in (self.embed, self.norm)) + \
            (0 if self.head is self.embed else self.head.numel()) + \
            sum(t.numel() for layer in self.layers for t in layer)
        self.inv_freq = inv_freq
        self._cos = self._sin = None
        self._linears: list | None = None
        self._head: _Linear | None = None
        self.matmul = resolve_matmul()
        # kernels.py's loops for one-token steps, unless MELODYFLOW_ATTENTION=torch
        self.compiled_attention = environment().compiled_attention
        self.kv_dtype = self.embed.dtype
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._k_np: list[np.ndarray] | None = None      # numpy views for kernels.py
        self._v_np: list[np.ndarray] | None = None
        self._norms_np: list[np.ndarray] = []
        self._one_kind = False
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None
        self.capacity = 0

    @classmethod
    def from_weights(cls, config: dict, weights: dict[str, torch.Tensor]) -> FastLlama:
        """From config.json (a dict) and the tensors of model.safetensors (LoRA merged)."""
        return cls(config=config, weights=weights)

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
        sin = emb.sin() * self.rope_scale
        half = self.head_dim // 2
        # rotate_half(x) * sin == cat(x2, x1) * cat(-sin1, sin2): the sign goes in the table
        self._sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
        self._cos_np, self._sin_np = self._cos.numpy(), self._sin.numpy()

    # The cache grows in steps of GROW positions up to the length asked for: attention then
    # reads K and V that lie nearly contiguous in memory (in a micro-benchmark at 250
    # positions and 16 rows, a quarter faster than slices of a 512-position buffer; a few
    # per cent on a whole bank), at the cost of a few copies.
    GROW = 64

    def new_cache(self, batch: int, length: int) -> None:
        """Room for `batch` rows of up to `length` positions. The cache is bfloat16 when the
        products are and the compiled kernels attend (half the memory to read a step; the
        bench's KL check measures the two together), else float32."""
        self.capacity = length
        bf16 = self.matmul == "bf16" and self._kernels() is not None
        self.kv_dtype = torch.bfloat16 if bf16 else self.embed.dtype
        self.k_cache = self.v_cache = None
        self._resize(list(range(batch)), 0, min(length, self.GROW))
        self._tables(length)

    def select(self, rows: list[int], used: int | None = None) -> None:
        """Keep only these batch rows in the cache (rows that finished drop out); only the
        first `used` positions (all when None) hold anything, so only they are copied."""
        width = self.k_cache.shape[3]
        self._resize(rows, width if used is None else used, width)

    def _resize(self, rows: list[int], used: int, width: int) -> None:
        """New buffers of `width` positions for these rows, their first `used` copied.
        (empty, not zeros: a position is always written before attention reads it)"""
        for name in ("k_cache", "v_cache"):
            old = getattr(self, name)
            new = torch.empty((len(self.layers), len(rows), self.n_kv, width, self.head_dim),
                              dtype=self.kv_dtype)
            used = min(used, old.shape[3]) if old is not None else 0
            if used:
                if rows == list(range(old.shape[1])):
                    new[:, :, :, :used].copy_(old[:, :, :, :used])
                else:
                    for j, row in enumerate(rows):
                        new[:, j, :, :used].copy_(old[:, row, :, :used])
            setattr(self, name, new)
        self._views()

    def use_matmul(self, kind: str) -> None:
        """Products in "bf16", "fp32" or "auto" (see the module docstring) from now on."""
        self.matmul = resolve_matmul(kind)
        self._linears = None

    def _prepare(self) -> None:
        """Weights packed once for oneDNN's or MKL's matrix product (less work a call)."""
        bf16 = self.matmul == "bf16"
        self._linears = []
        for _, wqkv, wo, _, wgu, wd in self.layers:
            gate, up = wgu.chunk(2, dim=0)
            self._linears.append(tuple(_Linear(w, bf16=bf16) for w in (wqkv, wo, gate, up, wd)))
        self._head = _Linear(self.head, bf16=bf16)
        # the compiled step feeds every product the same type
        kinds = {lin.kind for layer in self._linears for lin in layer} | {self._head.kind}
        self._one_kind = len(kinds) == 1
        norms = [w for ln1, _, _, ln2, _, _ in self.layers for w in (ln1, ln2)] + [self.norm]
        self._norms_np = [w.float().contiguous().numpy() for w in norms]

    def use_attention(self, compiled: bool) -> None:
        """One-token steps run kernels.py's compiled loops between the products (True, when
        numba has them) or torch's operations (False), from the next new_cache on."""
        self.compiled_attention = compiled

    def describe(self) -> str:
        """How decoding steps run, for the log (loads the compiled loops if they are used)."""
        loops = "compiled loops" if self._kernels() is not None else "torch's operations"
        return f"{self.matmul} products, {loops} between them"

    def _kernels(self):
        if not self.compiled_attention:
            return None
        return kernels.load(bf16=self.matmul == "bf16")

    def _views(self) -> None:
        self._k = list(self.k_cache.unbind(0))
        self._v = list(self.v_cache.unbind(0))
        if self.k_cache.dtype in (torch.float32, torch.bfloat16):  # what kernels.py takes
            self._k_np = [kernels.bits(t) for t in self._k]
            self._v_np = [kernels.bits(t) for t in self._v]
        else:
            self._k_np = self._v_np = None

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Logits of the last position; ids [batch, T] sit at positions start..start+T-1.

        T > 1 only from position 0 (a prefill); then one token a call, positions in order:
        attention reads every position below the last one written.
        """
        assert self.k_cache is not None, "call new_cache first"
        batch, length = ids.shape
        end = start + length
        if end > self.capacity:
            raise ValueError(f"position {end} beyond the cache ({self.capacity})")
        if length > 1 and start != 0:
            raise ValueError("a multi-token call must start at position 0")
        if end > self.k_cache.shape[3]:
            self._resize(list(range(batch)), start, min(self.capacity, end + self.GROW))
        if self._linears is None:
            self._prepare()
        step = None
        if length == 1 and self._k_np is not None and self._one_kind:
            step = self._kernels()
        if step is not None:
            return self._step_compiled(ids, start, step)
        cos = self._cos[start:end, None]             # [T, 1, hd]: broadcast over heads
        sin = self._sin[start:end, None]
        eps = self.eps
        x = F.embedding(ids, self.embed)
        shape = (x.shape[-1],)
        for i, (ln1, _, _, ln2, _, _) in enumerate(self.layers):
            lin_qkv, lin_o, lin_gate, lin_up, lin_down = self._linears[i]
            att = self._attend(i, lin_qkv(torch.rms_norm(x, shape, ln1, eps)), start, cos, sin)
            x = lin_o.add(att, x)
            x = _swiglu(lin_gate, lin_up, lin_down, torch.rms_norm(x, shape, ln2, eps), x)
        return self._head(torch.rms_norm(x[:, -1], shape, self.norm, eps))

    def _step_compiled(self, ids: torch.Tensor, start: int, k) -> torch.Tensor:
        """A one-token step: the products in their own type (bfloat16 in and out, or
        float32), kernels.py's loops between them, the residual stream in float32."""
        batch = ids.shape[0]
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        act = self._head.dtype
        x = self.embed.index_select(0, ids[:, 0])    # a copy: the stream is added to in place
        stream = x.numpy()
        normed = torch.empty(x.shape, dtype=act)      # each norm's output, read by a product
        normed_np = kernels.bits(normed)
        eps = np.float32(self.eps)
        norms = self._norms_np
        k.rms_norm(stream, norms[0], eps, normed_np)
        cos, sin = self._cos_np[start], self._sin_np[start]
        scale = np.float32(hd ** -0.5)
        for i, (lin_qkv, lin_o, lin_gate, lin_up, lin_down) in enumerate(self._linears):
            qkv = lin_qkv.raw(normed)
            att = torch.empty((batch, h * hd), dtype=act)
            k.attend(kernels.bits(qkv), cos, sin, self._k_np[i], self._v_np[i], start,
                     kernels.bits(att), h, kv, scale)
            k.add_rms_norm(stream, kernels.bits(lin_o.raw(att)), norms[2 * i + 1], eps,
                           normed_np)
            k.add_rms_norm(stream, kernels.bits(_mlp(lin_gate, lin_up, lin_down, normed)),
                           norms[2 * i + 2], eps, normed_np)
        return self._head.raw(normed).float()

    def _attend(self, i: int, qkv: torch.Tensor, start: int, cos: torch.Tensor,
                sin: torch.Tensor) -> torch.Tensor:
        """Layer i's attention with torch's operations: rotary embedding, K/V into the
        cache, attention over it. qkv [batch, T, (h + 2 kv) * hd] -> [batch, T, h * hd]."""
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        half = hd // 2
        batch, length = qkv.shape[:2]
        end = start + length
        qkv = qkv.view(batch, length, h + 2 * kv, hd)
        qk = qkv[:, :, :h + kv]
        qk = torch.addcmul(qk * cos, torch.cat([qk[..., half:], qk[..., :half]], dim=-1), sin)
        k_cache, v_cache = self._k[i], self._v[i]
        k_cache[:, :, start:end] = qk[:, :, h:].transpose(1, 2)
        v_cache[:, :, start:end] = qkv[:, :, h + kv:].transpose(1, 2)
        keys, values = k_cache[:, :, :end], v_cache[:, :, :end]
        if keys.dtype != qk.dtype:                   # a bfloat16 cache
            keys, values = keys.to(qk.dtype), values.to(qk.dtype)
        att = F.scaled_dot_product_attention(qk[:, :, :h].transpose(1, 2), keys, values,
                                             is_causal=length > 1, enable_gqa=kv != h)
        return att.transpose(1, 2).reshape(batch, length, h * hd)


# torch releases whose private packed-product ops (torch.ops.mkldnn._reorder_linear_weight,
# _linear_pointwise; torch.ops.mkl._mkl_linear) this module was tested with; under any
# other, the products run as F.linear (public, slower for a few rows, the same sums).
TESTED_TORCH = ("2.13",)


def _packing(torch_version: str = torch.__version__) -> str:
    """How weights get packed: oneDNN (fastest here for a few rows at a time), MKL, or not
    (F.linear): not under a torch release other than TESTED_TORCH."""
    if ".".join(torch_version.split("+")[0].split(".")[:2]) not in TESTED_TORCH:
        return "none"
    try:
        if torch.backends.mkldnn.is_available() and \
                hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and \
                hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            return "mkldnn"
        if torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear"):
            return "mkl"
    except (AttributeError, RuntimeError):
        pass
    return "none"


class _Linear:
    """x @ w.T, with the weight packed once for oneDNN or MKL where torch has them (the same
    products, fewer cycles a call for the handful of rows decoding runs), else F.linear.
    bf16=True: weight and input in bfloat16 (oneDNN only), the result in float32."""

    PACK = _packing()
    ROWS = 16                 # the batch size the packing is tuned for (any size works)

    def __init__(self, weight: torch.Tensor, bf16: bool = False) -> None:
        self.weight = weight.contiguous()
        self.packed = None
        self.kind = "none"
        if bf16 and weight.dtype == torch.float32 and self.PACK == "mkldnn":
            try:               # bfloat16 weights and inputs; float32 results
                self.packed = torch.ops.mkldnn._reorder_linear_weight(
                    self.weight.to(torch.bfloat16), self.ROWS)
                self.kind = "mkldnn-bf16"
                return
            except RuntimeError:
                self.packed = None
        if weight.dtype == torch.float32 and self.PACK != "none":
            try:
                if self.PACK == "mkldnn":
                    self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight,
                                                                          self.ROWS)
                else:
                    self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight,
                                                                           self.ROWS)
                self.kind = self.PACK
            except RuntimeError:
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mkldnn":
            return _DNN_LINEAR(x, self.packed, None, "none", [], "")
        if self.kind == "mkldnn-bf16":
            return _DNN_LINEAR(x.to(torch.bfloat16), self.packed, None, "none", [], "").float()
        if self.kind == "mkl":
            return _MKL_LINEAR(x, self.packed, self.weight, None, self.ROWS)
        return F.linear(x, self.weight)

    @property
    def dtype(self) -> torch.dtype:
        """The type raw() takes and gives."""
        return torch.bfloat16 if self.kind == "mkldnn-bf16" else torch.float32

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """x @ w.T in the product's own type (self.dtype), no conversions."""
        if self.kind in ("mkldnn", "mkldnn-bf16"):
            return _DNN_LINEAR(x, self.packed, None, "none", [], "")
        return self(x)

    # the same product with what follows it fused in (oneDNN), or after it (elsewhere)
    def add(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """x @ w.T + other"""
        if self.kind == "mkldnn":
            return _DNN_BINARY(x, other, self.packed, None, "add")
        return self(x) + other

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(x @ w.T) * other"""
        if self.kind == "mkldnn":
            return _DNN_BINARY(x, other, self.packed, None, "mul")
        return self(x) * other

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        """silu(x @ w.T)"""
        if self.kind == "mkldnn":
            return _DNN_LINEAR(x, self.packed, None, "swish", [], "")
        if self.kind == "mkldnn-bf16":
            return _DNN_LINEAR(x.to(torch.bfloat16), self.packed, None, "swish", [],
                               "").float()
        return F.silu(self(x))


def _mlp(gate: _Linear, up: _Linear, down: _Linear, x: torch.Tensor) -> torch.Tensor:
    """down(silu(gate(x)) * up(x)) in the products' own type, x already in it."""
    if gate.kind == up.kind == down.kind and gate.kind in ("mkldnn", "mkldnn-bf16"):
        hidden = _DNN_BINARY(x, _DNN_LINEAR(x, gate.packed, None, "swish", [], ""),
                             up.packed, None, "mul")
        return _DNN_LINEAR(hidden, down.packed, None, "none", [], "")
    return down.raw(up.mul(x, gate.silu(x)))


def _swiglu(gate: _Linear, up: _Linear, down: _Linear, x: torch.Tensor,
            residual: torch.Tensor) -> torch.Tensor:
    """down(silu(gate(x)) * up(x)) + residual: the MLP with what oneDNN can fuse fused. In
    bfloat16 the hidden product stays bfloat16 (down rounds its input to it anyway), so the
    MLP casts twice instead of six times."""
    if gate.kind == up.kind == down.kind == "mkldnn-bf16":
        return _mlp(gate, up, down, x.to(torch.bfloat16)).float() + residual
    return down.add(up.mul(x, gate.silu(x)), residual)


_DNN_LINEAR = torch.ops.mkldnn._linear_pointwise.default if _Linear.PACK == "mkldnn" else None
_DNN_BINARY = torch.ops.mkldnn._linear_pointwise.binary if _Linear.PACK == "mkldnn" else None
_MKL_LINEAR = torch.ops.mkl._mkl_linear.default if _Linear.PACK == "mkl" else None
