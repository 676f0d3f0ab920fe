"""One decoding step's attention, compiled with numba: the rotary embedding of the new
position's query and key, its K/V written into the cache, and attention of every row and
head over the cache, in one call a layer.

Why: decoding attends one query a row over a cache that, on the 2-core machine, no longer
fits the core's caches once a bank is half written. torch's one-query attention
(scaled_dot_product_attention) reads K and V at well under the memory's speed there; this
loop reads each row's K and V once, in order, and in a micro-benchmark on that machine took
40-50 % of its time (16 rows, 4 heads of 48, 64-350 positions). It also spares the half
dozen small torch operations around attention (rotary, cache writes, transposes) that each
cost more in dispatch than in arithmetic at this size.

Used by FastLlama for one-token steps when numba is installed and the kernel compiles
(compiled once a machine and cached on disk by numba); otherwise FastLlama keeps torch's
operations, which compute the same values (tests compare the two).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..config import attention_kind_requested

log = logging.getLogger(__name__)

_KERNEL = None          # the compiled function, once loaded
_FAILED = False         # numba missing or the kernel did not compile: use torch


def _build():
    from numba import njit

    # fastmath: lets LLVM vectorize the dot products and sums (reassociation); no value
    # here is NaN or infinite, which fastmath assumes
    @njit(fastmath=True, nogil=True, cache=True)
    def step(qkv, cos, sin, k_cache, v_cache, pos, out, n_heads, n_kv, scale):
        rows = qkv.shape[0]
        hd = cos.shape[0]
        half = hd // 2
        group = n_heads // n_kv
        length = pos + 1
        scores = np.empty(length, np.float32)
        q = np.empty(hd, np.float32)
        acc = np.empty(hd, np.float32)
        for r in range(rows):
            x = qkv[r]
            for j in range(n_kv):
                base = (n_heads + j) * hd
                keys = k_cache[r, j, pos]
                # rotate_half: the first half pairs with the second (sin carries the sign)
                for d in range(half):
                    keys[d] = x[base + d] * cos[d] + x[base + half + d] * sin[d]
                for d in range(half, hd):
                    keys[d] = x[base + d] * cos[d] + x[base + d - half] * sin[d]
                v_cache[r, j, pos, :] = x[(n_heads + n_kv + j) * hd:(n_heads + n_kv + j + 1) * hd]
            for h in range(n_heads):
                base = h * hd
                for d in range(half):
                    q[d] = (x[base + d] * cos[d] + x[base + half + d] * sin[d]) * scale
                for d in range(half, hd):
                    q[d] = (x[base + d] * cos[d] + x[base + d - half] * sin[d]) * scale
                keys = k_cache[r, h // group]
                values = v_cache[r, h // group]
                top = np.float32(-3.0e38)
                for t in range(length):
                    s = np.float32(0.0)
                    for d in range(hd):
                        s += q[d] * keys[t, d]
                    scores[t] = s
                    top = max(top, s)
                total = np.float32(0.0)
                for t in range(length):
                    e = np.exp(scores[t] - top)
                    scores[t] = e
                    total += e
                inv = np.float32(1.0) / total
                acc[:] = 0.0
                for t in range(length):
                    p = scores[t] * inv
                    for d in range(hd):
                        acc[d] += p * values[t, d]
                out[r, base:base + hd] = acc

    return step


def kernel():
    """The compiled step, or None when numba is missing, MELODYFLOW_ATTENTION=torch, or the
    kernel fails to compile (logged once)."""
    global _KERNEL, _FAILED
    if attention_kind_requested() == "torch":
        return None
    if _KERNEL is not None or _FAILED:
        return _KERNEL
    try:
        step = _build()
        _warm(step)
    except Exception as exc:  # ImportError, or numba's own errors: torch serves instead
        _FAILED = True
        log.warning("compiled attention unavailable (%s: %s); using torch's",
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    _KERNEL = step
    return step


def _warm(step) -> None:
    """Compile (or load from numba's cache) with the argument types of real calls."""
    hd, heads = 4, 2
    qkv = np.zeros((1, 3 * heads * hd), np.float32)
    table = np.ones(hd, np.float32)
    cache = np.zeros((1, heads, 2, hd), np.float32)
    step(qkv, table, table, cache, cache.copy(), 0, np.zeros((1, heads * hd), np.float32),
         heads, heads, np.float32(1.0))


def attend_step(step, qkv: torch.Tensor, cos: np.ndarray, sin: np.ndarray,
                k_cache: np.ndarray, v_cache: np.ndarray, pos: int, n_heads: int, n_kv: int,
                scale: np.float32) -> torch.Tensor:
    """Attention output [rows, 1, n_heads * head_dim] for qkv [rows, 1, (h + 2 kv) * hd] of
    the token at `pos`; K and V of `pos` are written into the caches ([rows, kv, width, hd],
    numpy views of FastLlama's)."""
    rows = qkv.shape[0]
    hd = cos.shape[0]
    out = torch.empty((rows, 1, n_heads * hd), dtype=torch.float32)
    step(qkv.view(rows, -1).numpy(), cos, sin, k_cache, v_cache, pos, out.view(rows, -1).numpy(),
         n_heads, n_kv, scale)
    return out
