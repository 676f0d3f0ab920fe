"""The work of a decoding step between its matrix products, compiled with numba.

A one-token step for 16 rows of a small Llama is a few dozen tiny operations: in eager
torch each costs more in dispatch and in memory traffic than in arithmetic, and torch's
one-query attention reads the KV cache at well under the memory's speed once the cache
outgrows the core's caches. So FastLlama runs its one-token steps as the matrix products
(oneDNN, packed weights) with three compiled loops between them:

- ``rms_norm``: the RMSNorm of the residual stream, written in the products' input type;
- ``add_rms_norm``: a product's output added to the residual stream, then the next norm;
- ``attend``: rotary embedding of the new query and key, K and V written into the cache,
  and attention of every row and head over the cache, its output in the products' type.

The residual stream, norms, softmax and sums stay float32. Arrays are float32 or bfloat16;
bfloat16 arrays come as their bits (uint16, see ``bits``) and are read and written with
round-to-nearest-even, as torch rounds. numba compiles a version for each mix of the two
(once a machine: numba caches it on disk).

``load()`` gives the kernels, or None when numba is missing, MELODYFLOW_ATTENTION=torch,
or they fail to compile (logged once); FastLlama then keeps torch's operations, which
compute the same values (tests compare the two).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import torch

from ..config import attention_kind_requested

log = logging.getLogger(__name__)

_KERNELS: SimpleNamespace | None = None
_FAILED = False          # numba missing or the kernels did not compile: torch serves


def bits(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a float32 tensor, or of a bfloat16 tensor's bits (uint16)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def _build() -> SimpleNamespace:
    from numba import njit, types
    from numba.extending import intrinsic, overload

    @intrinsic
    def as_float(typingctx, word):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.float32))
        return types.float32(types.uint32), codegen

    @intrinsic
    def as_word(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.uint32))
        return types.uint32(types.float32), codegen

    def get(array, i):
        """array[i] as float32, whether the array holds float32 or bfloat16 bits"""

    def put(array, i, value):
        """array[i] = value (float32), rounded to bfloat16 for a bfloat16 array"""

    @overload(get, inline="always")
    def _get(array, i):
        if array.dtype == types.uint16:
            return lambda array, i: as_float(np.uint32(array[i]) << np.uint32(16))
        return lambda array, i: array[i]

    @overload(put, inline="always")
    def _put(array, i, value):
        if array.dtype == types.uint16:
            def store(array, i, value):
                word = as_word(np.float32(value))
                word += np.uint32(0x7FFF) + ((word >> np.uint32(16)) & np.uint32(1))
                array[i] = np.uint16(word >> np.uint32(16))
            return store

        def store_float(array, i, value):
            array[i] = value
        return store_float

    # fastmath lets LLVM vectorize the sums (reassociation); nothing here is NaN or infinite
    jit = njit(fastmath=True, nogil=True, cache=True)

    @jit
    def norm_rows(x, weight, eps, out):
        for r in range(x.shape[0]):
            row = x[r]
            total = np.float32(0.0)
            for d in range(row.shape[0]):
                total += row[d] * row[d]
            scale = np.float32(1.0) / np.sqrt(total / np.float32(row.shape[0]) + eps)
            target = out[r]
            for d in range(row.shape[0]):
                put(target, d, row[d] * scale * weight[d])

    @jit
    def rms_norm(x, weight, eps, out):
        norm_rows(x, weight, eps, out)

    @jit
    def add_rms_norm(x, delta, weight, eps, out):
        for r in range(x.shape[0]):
            row, add = x[r], delta[r]
            for d in range(row.shape[0]):
                row[d] += get(add, d)
        norm_rows(x, weight, eps, out)

    @jit
    def attend(qkv, cos, sin, k_cache, v_cache, pos, out, n_heads, n_kv, scale):
        hd = cos.shape[0]
        half = hd // 2
        group = n_heads // n_kv
        length = pos + 1
        scores = np.empty(length, np.float32)
        q = np.empty(hd, np.float32)
        acc = np.empty(hd, np.float32)
        for r in range(qkv.shape[0]):
            x = qkv[r]
            for j in range(n_kv):
                base = (n_heads + j) * hd
                keys = k_cache[r, j, pos]
                values = v_cache[r, j, pos]
                # rotate_half: the first half pairs with the second (sin carries the sign)
                for d in range(half):
                    put(keys, d, get(x, base + d) * cos[d] + get(x, base + half + d) * sin[d])
                for d in range(half, hd):
                    put(keys, d, get(x, base + d) * cos[d] + get(x, base + d - half) * sin[d])
                vbase = (n_heads + n_kv + j) * hd
                for d in range(hd):
                    put(values, d, get(x, vbase + d))
            target = out[r]
            for h in range(n_heads):
                base = h * hd
                for d in range(half):
                    q[d] = (get(x, base + d) * cos[d] + get(x, base + half + d) * sin[d]) * scale
                for d in range(half, hd):
                    q[d] = (get(x, base + d) * cos[d] + get(x, base + d - half) * sin[d]) * scale
                keys = k_cache[r, h // group]
                values = v_cache[r, h // group]
                top = np.float32(-3.0e38)
                for t in range(length):
                    key = keys[t]
                    s = np.float32(0.0)
                    for d in range(hd):
                        s += q[d] * get(key, d)
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
                    value = values[t]
                    for d in range(hd):
                        acc[d] += p * get(value, d)
                for d in range(hd):
                    put(target, base + d, acc[d])

    return SimpleNamespace(rms_norm=rms_norm, add_rms_norm=add_rms_norm, attend=attend)


def load() -> SimpleNamespace | None:
    """The compiled kernels (rms_norm, add_rms_norm, attend), or None: numba missing,
    MELODYFLOW_ATTENTION=torch, or they did not compile (logged once)."""
    global _KERNELS, _FAILED
    if attention_kind_requested() == "torch":
        return None
    if _KERNELS is not None or _FAILED:
        return _KERNELS
    try:
        kernels = _build()
        _warm(kernels)
    except Exception as exc:  # ImportError, or numba's own errors: torch serves instead
        _FAILED = True
        log.warning("compiled decoding kernels unavailable (%s: %s); using torch's",
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    _KERNELS = kernels
    return kernels


def _warm(kernels: SimpleNamespace) -> None:
    """Compile (or load from numba's cache) the versions real calls use: float32 throughout,
    and bfloat16 products with a bfloat16 cache."""
    hd, heads = 4, 2
    table = np.ones(hd, np.float32)
    eps = np.float32(1e-5)
    scale = np.float32(1.0)
    for kind in (np.float32, np.uint16):
        x = np.ones((1, heads * hd), np.float32)
        act = np.zeros((1, heads * hd), kind)
        kernels.rms_norm(x, table.repeat(heads), eps, act)
        kernels.add_rms_norm(x, act, table.repeat(heads), eps, act)
        qkv = np.zeros((1, 3 * heads * hd), kind)
        cache = np.zeros((1, heads, 2, hd), kind)
        kernels.attend(qkv, table, table, cache, cache.copy(), 0, act, heads, heads, scale)
