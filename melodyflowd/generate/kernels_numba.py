"""The compiled loops of kernels.py (numba): imported only when they are wanted, since
importing this module imports numba. Module-level functions so that numba's on-disk cache
finds them again in the next process."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

# numba has no scalar bit cast: these two reinterpret a uint32 as a float32 and back, which
# is how bfloat16 bits (the top half of a float32) are read and written


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


# fastmath lets LLVM vectorize the sums (reassociation; nothing here is NaN or infinite).
# Each kernel is one self-contained function (helpers inlined into it by numba): a kernel
# that called another compiled function summed in another order when freshly compiled than
# when loaded from numba's disk cache, so one seed gave two banks. tests/generate/test_fastllama.py
# checks that fresh and cached kernels give the same bits.
jit = njit(fastmath=True, nogil=True, cache=True)


@njit(fastmath=True, nogil=True, cache=True, inline="always")
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
