"""The MELODYFLOW_* environment switches: how decoding runs, not what it plays.

Read and checked here only; the rest of generation gets them as typed values. The daemon
reads them once at start (service/config.py) so that a bad value stops it there, with one
line, and not later in the generator child.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from melodyflowd.errors import UserError

MATMUL_KINDS = ("auto", "bf16", "fp32")
ATTENTION_KINDS = ("auto", "torch")


@dataclass(frozen=True)
class Environment:
    """The four MELODYFLOW_* switches:

    - matmul (MELODYFLOW_MATMUL): "auto" (bfloat16 products where the CPU has them, see
      generate/fastllama.py), "bf16" or "fp32";
    - attention (MELODYFLOW_ATTENTION): "auto" (the compiled loops of generate/kernels.py
      where numba is installed) or "torch";
    - threads (MELODYFLOW_THREADS): torch threads for decoding; None when unset;
    - hf_forward (MELODYFLOW_HF_FORWARD=1): transformers' forward instead of FastLlama.
    """

    matmul: str = "auto"
    attention: str = "auto"
    threads: int | None = None
    hf_forward: bool = False

    @property
    def compiled_attention(self) -> bool:
        return self.attention != "torch"


def _env_kind(name: str, kinds: tuple[str, ...], what: str) -> str:
    kind = (os.environ.get(name) or "auto").strip().lower()
    if kind not in kinds:
        raise UserError(f"{name}={kind!r} is not {what}; accepted: {', '.join(kinds)}")
    return kind


def _env_threads(name: str) -> int | None:
    text = (os.environ.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{name}={text!r} is not a number of threads; accepted: 1 or more")
    return int(text)


def environment() -> Environment:
    """The MELODYFLOW_* switches as they are now; a bad value is a UserError naming it."""
    return Environment(
        matmul=_env_kind("MELODYFLOW_MATMUL", MATMUL_KINDS, "a kind of matrix product"),
        attention=_env_kind("MELODYFLOW_ATTENTION", ATTENTION_KINDS, "a kind of attention"),
        threads=_env_threads("MELODYFLOW_THREADS"),
        hf_forward=os.environ.get("MELODYFLOW_HF_FORWARD", "") not in ("", "0"))


def attention_kind(env: Environment | None = None) -> str:
    """"compiled" or "torch": what decoding will attend with, as far as can be told without
    importing numba (the bank cache keys on it: the two round differently)."""
    env = environment() if env is None else env
    if not env.compiled_attention or importlib.util.find_spec("numba") is None:
        return "torch"
    return "compiled"
