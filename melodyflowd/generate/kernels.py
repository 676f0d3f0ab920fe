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
in use, once a machine (about 3 s; numba caches it on disk, and later processes import
numba and load it in about 0.6 s).

``load()`` gives the kernels, or None when numba is missing or they fail to compile
(logged once); FastLlama then keeps torch's operations, which
compute the same values up to rounding (tests compare the two).
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np
import torch

log = logging.getLogger(__name__)

_KERNELS: ModuleType | None = None
_FAILED = False          # numba missing or the kernels did not compile: torch serves
_WARM: set[type] = set()     # the array types compiled (or loaded from numba's cache) so far


def bits(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a float32 tensor, or of a bfloat16 tensor's bits (uint16)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def load(bf16: bool = False) -> ModuleType | None:
    """The compiled kernels (rms_norm, add_rms_norm, attend) ready for float32 arrays, or
    for bfloat16 products and cache with bf16=True; None when numba is missing or they did
    not compile (logged once). Whether to use them at all is the caller's choice
    (FastLlama.use_attention)."""
    global _KERNELS, _FAILED
    if _FAILED:
        return None
    kind = np.uint16 if bf16 else np.float32
    if _KERNELS is not None and kind in _WARM:
        return _KERNELS
    try:
        from melodyflowd.generate import kernels_numba as kernels  # imports numba

        _warm(kernels, kind)
    except Exception as exc:  # ImportError, or numba's own errors: torch serves instead
        _FAILED = True
        log.warning("compiled decoding kernels unavailable (%s: %s); using torch's",
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    _KERNELS = kernels
    _WARM.add(kind)
    return kernels


def _warm(kernels: ModuleType, kind: type) -> None:
    """Compile (or load from numba's disk cache) the version real calls use, here rather
    than in the middle of a step, where a failure could not fall back to torch."""
    hd, heads = 4, 2
    table = np.ones(hd, np.float32)
    x = np.ones((1, heads * hd), np.float32)
    act = np.zeros((1, heads * hd), kind)
    kernels.rms_norm(x, table.repeat(heads), np.float32(1e-5), act)
    kernels.add_rms_norm(x, act, table.repeat(heads), np.float32(1e-5), act)
    qkv = np.zeros((1, 3 * heads * hd), kind)
    cache = np.zeros((1, heads, 2, hd), kind)
    kernels.attend(qkv, table, table, cache, cache.copy(), 0, act, heads, heads,
                   np.float32(1.0))
