"""Load a model: the embedded default, a local Hugging Face directory or a hub id, plus an
optional LoRA adapter (a peft directory or a style name under the model's ``adapters/``).

Weights load from safetensors only (never pickle) and never with remote code. Every
problem a user can fix (a missing directory or file, pickle-only weights, no network
for a hub id, an unknown style) is one UserError line that names the file.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .textformat import PROFILE_FILE, ModelProfile

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
ADAPTERS_DIR = "adapters"


class ModelError(UserError):
    """A model or adapter that cannot be loaded: names the file and what to do."""


@dataclass
class LoadedModel:
    model: Any                      # a transformers PreTrainedModel, in eval mode
    tokenizer: Any                  # a PreTrainedTokenizerFast
    profile: ModelProfile
    name: str                       # "default", a directory or a hub id, as given
    adapter: str | None = None      # adapter directory as resolved, or None
    path: str = ""                  # the directory (or hub id) the weights came from
    load_seconds: float = 0.0
    _note_tokenizer: Any = field(default=None, repr=False)
    _fast: Any = field(default=None, repr=False)

    @property
    def note_tokenizer(self):
        """The NoteTokenizer for this tokenizer and profile (built once, then reused)."""
        if self._note_tokenizer is None:
            from .constraint import NoteTokenizer

            self._note_tokenizer = NoteTokenizer(self.tokenizer, self.profile)
        return self._note_tokenizer


    @property
    def fast_forward(self):
        """A FastLlama over this model's weights, or None for other architectures."""
        if self._fast is None:
            from .fastllama import FastLlama

            self._fast = FastLlama(self.model) if FastLlama.supports(self.model) else False
        return self._fast or None


# -- profiles ---------------------------------------------------------------------------

def _profile_file_for_hub_id(hub_id: str) -> Path:
    return PROFILES_DIR / (hub_id.replace("/", "__") + ".json")


def shipped_profile(hub_id: str) -> ModelProfile | None:
    """The profile shipped with melodyflowd for a known hub model (e.g. dx2102/llama-midi)."""
    path = _profile_file_for_hub_id(hub_id)
    if not path.is_file():
        return None
    return ModelProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))


def resolve_profile(directory: Path | None, name: str) -> ModelProfile:
    """melodyflow.json in the directory, else the shipped profile for `name`, else a default
    (llama-midi text: title prompt line, the five-column header, ms, no chord markers)."""
    if directory is not None and (directory / PROFILE_FILE).is_file():
        return ModelProfile.load(directory)
    shipped = shipped_profile(name)
    if shipped is not None:
        return shipped
    return ModelProfile(name=name)


# -- where the model is -----------------------------------------------------------------

def _looks_like_path(spec: str) -> bool:
    """A directory that exists, or anything that cannot be a hub id ("owner/name")."""
    return (Path(spec).expanduser().exists() or spec.startswith((".", "/", "~", "\\"))
            or spec.count("/") != 1 or "\\" in spec)


def _check_model_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise ModelError("model directory not found; pass a Hugging Face model directory "
                         "or a hub id like dx2102/llama-midi", file=str(directory))
    if not (directory / "config.json").is_file():
        raise ModelError("missing config.json; a model directory needs config.json, "
                         "model.safetensors and tokenizer files", file=str(directory))
    weights = [directory / "model.safetensors", directory / "model.safetensors.index.json"]
    if not any(p.is_file() for p in weights):
        pickled = [p.name for p in directory.glob("*.bin")] + [p.name for p in
                                                                directory.glob("*.pt")]
        extra = (f" (found {', '.join(sorted(pickled))}: pickle weights are not loaded; "
                 "convert them to safetensors)") if pickled else ""
        raise ModelError(f"missing model.safetensors{extra}",
                         file=str(directory / "model.safetensors"))
    # A fast tokenizer needs tokenizer.json; without it, only the files a slow tokenizer
    # is converted from (sentencepiece model, BPE vocab + merges, WordPiece vocab) will do.
    slow = [("tokenizer.model",), ("vocab.json", "merges.txt"), ("vocab.txt",)]
    if not (directory / "tokenizer.json").is_file() and \
            not any(all((directory / f).is_file() for f in files) for files in slow):
        raise ModelError("missing tokenizer.json (the model's tokenizer); copy it from where "
                         "the model was trained", file=str(directory / "tokenizer.json"))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_pretrained(source: str, *, local_only: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(trust_remote_code=False, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True,
                                                 dtype=torch.float32, **kwargs)
    model.eval()
    return model, tokenizer


def _load_hub(hub_id: str):
    local_only = _offline()
    try:
        return _load_pretrained(hub_id, local_only=local_only)
    except OSError as exc:
        why = ("the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache"
               if local_only else f"the hub could not provide it ({_first_line(exc)})")
        raise ModelError(f"no such directory, and cannot load hub model {hub_id!r}: {why}; "
                         "pass a local model directory "
                         "or run once with network access", file=hub_id) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


# -- adapters ---------------------------------------------------------------------------

def available_styles(model_dir: Path | None) -> list[str]:
    if model_dir is None or not (model_dir / ADAPTERS_DIR).is_dir():
        return []
    return sorted(p.name for p in (model_dir / ADAPTERS_DIR).iterdir()
                  if (p / "adapter_config.json").is_file())


def resolve_adapter(adapter: str, model_dir: Path | None) -> Path:
    """An adapter directory, or a style name found in <model>/adapters/<style>/."""
    candidate = Path(adapter).expanduser()
    if candidate.is_dir():
        directory = candidate
    elif model_dir is not None and (model_dir / ADAPTERS_DIR / adapter).is_dir():
        directory = model_dir / ADAPTERS_DIR / adapter
    else:
        styles = available_styles(model_dir)
        accepted = ", ".join(styles) if styles else "none in this model"
        raise ModelError(f"adapter not found: not a directory and not a style of the model "
                         f"(styles: {accepted})", file=adapter)
    if not (directory / "adapter_config.json").is_file():
        raise ModelError("missing adapter_config.json; an adapter is a peft LoRA directory",
                         file=str(directory / "adapter_config.json"))
    if not (directory / "adapter_model.safetensors").is_file():
        raise ModelError("missing adapter_model.safetensors (pickle adapters are not loaded)",
                         file=str(directory / "adapter_model.safetensors"))
    return directory


def _apply_adapter(model, directory: Path):
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # peft asks transformers a deprecated question; the warning is not ours to fix
            # and would land in every journal.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                    category=FutureWarning)
            peft_model = PeftModel.from_pretrained(model, str(directory), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"adapter does not fit this model: {_first_line(exc)}",
                         file=str(directory)) from None
    # Merged weights run as fast as the base model; the adapter is no longer needed apart.
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged


# -- the entry point --------------------------------------------------------------------

def load_model(spec: str | None = None, adapter: str | None = None) -> LoadedModel:
    """Load the embedded default (spec None or "default"), a local directory or a hub id."""
    started = time.perf_counter()
    if spec is None or spec == "default":
        directory: Path | None = DEFAULT_MODEL_DIR
        name = "default"
        if not DEFAULT_MODEL_DIR.is_dir():
            raise ModelError("the embedded default model is missing from this installation; "
                             "pass --model DIR or reinstall melodyflowd", file=str(directory))
    else:
        name = spec
        path = Path(spec).expanduser()
        directory = path if _looks_like_path(spec) else None
    if directory is not None:
        _check_model_dir(directory)
        try:
            model, tokenizer = _load_pretrained(str(directory), local_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the model: {_first_line(exc)}",
                             file=str(directory)) from None
        source = str(directory)
    else:
        model, tokenizer = _load_hub(name)
        source = name
    profile = resolve_profile(directory, name)
    adapter_dir = None
    if adapter:
        adapter_dir = resolve_adapter(adapter, directory)
        model = _apply_adapter(model, adapter_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, profile=profile, name=name,
                       adapter=str(adapter_dir) if adapter_dir else None, path=source,
                       load_seconds=time.perf_counter() - started)


def style_adapter(spec: str | None, style: str | None) -> str | None:
    """The style name of a chart (e.g. "bebop") if the model has an adapter of that name."""
    if not style:
        return None
    directory = DEFAULT_MODEL_DIR if spec in (None, "default") else Path(spec).expanduser()
    return style if style in available_styles(directory) else None
