"""Load a model: the embedded default, a local Hugging Face directory or a hub id, plus an
optional LoRA adapter (a peft directory or a style name under the model's ``adapters/``).

Weights load from safetensors only (never pickle) and never with remote code. Every
problem a user can fix (a missing directory or file, pickle-only weights, no network
for a hub id, an unknown style) is one UserError line that names the file.

The lean path: a local directory with a plain Llama (config.json says so, weights in one
model.safetensors, a tokenizer.json that needs nothing from transformers) loads without
importing transformers at all: the tensors go straight into FastLlama (fastllama.py),
the tokenizer is the `tokenizers` package's own, and a plain LoRA adapter is merged here
(W + B A * alpha / r, what peft's merge_and_unload computes). That saves the second or
two that importing transformers takes. ``LoadedModel.model`` still gives the transformers
model - built on first use, from the same files - for whoever wants model.generate();
anything else (hub ids, other architectures, adapters peft must handle) loads through
transformers and peft as before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from melodyflowd.errors import UserError
from melodyflowd.files import check_folder_files
from melodyflowd.generate.textformat import PROFILE_FILE, ModelProfile

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
ADAPTERS_DIR = "adapters"

log = logging.getLogger(__name__)


class ModelError(UserError):
    """A model or adapter that cannot be loaded: names the file and what to do."""


@dataclass
class LoadedModel:
    _model: Any                     # a transformers PreTrainedModel in eval mode, or None
    tokenizer: Any                  # a PreTrainedTokenizerFast or a LeanTokenizer
    profile: ModelProfile
    name: str                       # "default", a directory or a hub id, as given
    adapter: str | None = None      # adapter directory as resolved, or None
    path: str = ""                  # the directory (or hub id) the weights came from
    load_seconds: float = 0.0
    config: dict = field(default_factory=dict, repr=False)   # config.json
    _note_tokenizer: Any = field(default=None, repr=False)
    _fast: Any = field(default=None, repr=False)
    _build_model: Any = field(default=None, repr=False)      # lean: makes .model on demand

    @property
    def model(self):
        """The transformers model (for model.generate()); built on first use after a lean
        load, which imports transformers then."""
        if self._model is None and self._build_model is not None:
            self._model = self._build_model()
        return self._model

    @property
    def lean(self) -> bool:
        """Loaded without transformers (the transformers model not built yet)."""
        return self._model is None

    @property
    def context_length(self) -> int:
        """Positions the model reads (max_position_embeddings); 0 when unknown."""
        return int(self.config.get("max_position_embeddings") or 0)

    @property
    def n_params(self) -> int:
        if self._model is not None:
            return sum(p.numel() for p in self._model.parameters())
        return self._fast.n_params if self._fast else 0

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt, special tokens (BOS) included as the tokenizer adds them."""
        return list(self.tokenizer(text)["input_ids"])

    @property
    def note_tokenizer(self):
        """The NoteTokenizer for this tokenizer and profile (built once, then reused)."""
        if self._note_tokenizer is None:
            from melodyflowd.generate.constraint import NoteTokenizer

            self._note_tokenizer = NoteTokenizer(self.tokenizer, self.profile)
        return self._note_tokenizer

    @property
    def fast_forward(self):
        """A FastLlama over this model's weights, or None for other architectures."""
        if self._fast is None:
            from melodyflowd.generate.fastllama import FastLlama

            self._fast = FastLlama(self.model) if FastLlama.supports(self.model) else False
        return self._fast or None


# tokenizer_config.json classes that are tokenizer.json and nothing more (transformers 4, 5)
LEAN_TOKENIZER_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend")


class LeanTokenizer:
    """What melodyflowd asks of a PreTrainedTokenizerFast, over `tokenizers` alone.

    Used for a tokenizer.json whose tokenizer_config.json asks for nothing beyond it
    (tokenizer_class PreTrainedTokenizerFast, TokenizersBackend or none, no add_bos/eos
    overrides). ``tokenizers.Tokenizer`` alone does not serve: the names of the special
    tokens (bos, eos, unk, pad) live in tokenizer_config.json, not in tokenizer.json, and
    the constraint code and compose ask for them, for their ids, for ``len()`` with added
    tokens and for ``tokenizer(text)["input_ids"]`` as transformers gives them; this class
    is that much and no more, so that banks are the same whichever of the two loaded.
    """

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config = _tokenizer_config(directory)
        self._named: dict[str, str | None] = {}
        for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = config.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            self._named[name] = value if isinstance(value, str) else None
        added = self.backend_tokenizer.get_added_tokens_decoder()
        specials = [t for t in self._named.values() if t is not None]
        specials += [tok.content for _, tok in sorted(added.items()) if tok.special]
        self.all_special_tokens = list(dict.fromkeys(specials))
        self.all_special_ids = [i for i in (self.backend_tokenizer.token_to_id(t)
                                            for t in self.all_special_tokens) if i is not None]

    @staticmethod
    def usable(directory: Path) -> bool:
        if not (directory / "tokenizer.json").is_file():
            return False
        config = _tokenizer_config(directory)
        return (config.get("tokenizer_class") in LEAN_TOKENIZER_CLASSES
                and not any(k in config for k in ("add_bos_token", "add_eos_token",
                                                   "add_prefix_space", "auto_map")))

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def _id(self, name: str) -> int | None:
        token = self._named.get(name)
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    bos_token = property(lambda self: self._named["bos_token"])
    eos_token = property(lambda self: self._named["eos_token"])
    unk_token = property(lambda self: self._named["unk_token"])
    pad_token = property(lambda self: self._named["pad_token"])
    bos_token_id = property(lambda self: self._id("bos_token"))
    eos_token_id = property(lambda self: self._id("eos_token"))
    unk_token_id = property(lambda self: self._id("unk_token"))
    pad_token_id = property(lambda self: self._id("pad_token"))

    @pad_token.setter
    def pad_token(self, value: str | None) -> None:
        self._named["pad_token"] = value

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(i) for i in ids]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.backend_tokenizer.token_to_id(tokens)
        return [self.backend_tokenizer.token_to_id(t) for t in tokens]

    def __call__(self, text: str, add_special_tokens: bool = True,
                 return_tensors: str | None = None) -> dict[str, Any]:
        ids = self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        if return_tensors == "pt":
            import torch

            tensor = torch.tensor([ids], dtype=torch.long)
            return {"input_ids": tensor, "attention_mask": torch.ones_like(tensor)}
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' or None")
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _tokenizer_config(directory: Path) -> dict:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
    try:
        check_folder_files(directory, "model", ModelError)
    except OSError as exc:
        raise ModelError(f"cannot read the model directory: {exc.strerror or exc}",
                         file=exc.filename or str(directory)) from None
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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()        # no "Loading weights" bars in logs and output

    kwargs = dict(trust_remote_code=False, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model, info = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True,
                                                       dtype=torch.float32,
                                                       output_loading_info=True, **kwargs)
    # transformers fills tensors the weights lack with random numbers and goes on; a model
    # that would play noise is an error here.
    for kind, what in (("missing_keys", "lack"), ("mismatched_keys", "have the wrong shape for")):
        names = sorted(str(name) for name in info.get(kind) or ())
        if names:
            raise ModelError(f"the weights {what} {len(names)} of the tensors the model "
                             f"needs (e.g. {names[0]}); the model directory is incomplete or "
                             "from another model", file=source)
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


# -- the lean path -----------------------------------------------------------------------

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lean_config(directory: Path) -> dict | None:
    """config.json when this directory can load without transformers, else None."""
    from melodyflowd.generate.fastllama import config_supported

    config = _read_json(directory / "config.json")
    if config is None or not config_supported(config):
        return None
    if not (directory / "model.safetensors").is_file() or not LeanTokenizer.usable(directory):
        return None
    return config


# adapter_config.json keys the lean merge reads, or that do not change merged weights
LORA_ANY_VALUE = frozenset({
    "peft_type", "task_type", "r", "lora_alpha", "target_modules", "use_rslora",
    "lora_dropout", "inference_mode", "init_lora_weights", "base_model_name_or_path",
    "revision", "peft_version", "auto_mapping", "megatron_core", "qalora_group_size",
    "ensure_weight_tying"})
# keys the lean merge understands only switched off (null, false, "none", empty)
LORA_OFF_ONLY = frozenset({
    "use_dora", "bias", "fan_in_fan_out", "modules_to_save", "layers_to_transform",
    "layers_pattern", "rank_pattern", "alpha_pattern", "lora_bias", "use_qalora",
    "target_parameters", "trainable_token_indices", "layer_replication", "exclude_modules",
    "megatron_config", "loftq_config", "eva_config", "corda_config", "arrow_config",
    "alora_invocation_tokens", "kasa_config", "lora_ga_config", "monteclora_config",
    "use_bdlora", "velora_config"})


def lora_refusals(config: dict) -> list[str]:
    """The adapter_config.json keys the lean merge does not understand, by name: any key not
    in its allow-list, and allow-listed keys set to something it does not compute. Empty
    when W + B A * scale is the whole of the adapter."""
    refused = [key for key in config if key not in LORA_ANY_VALUE | LORA_OFF_ONLY]
    refused += [key for key in sorted(LORA_OFF_ONLY & config.keys())
                if config[key] not in (None, False, "none", {}, [])]
    if config.get("peft_type") != "LORA":
        refused.append("peft_type")
    if config.get("task_type", "CAUSAL_LM") not in (None, "CAUSAL_LM"):
        refused.append("task_type")
    targets = config.get("target_modules")
    if isinstance(targets, str) or not targets or not set(targets) <= set(LORA_TARGETS):
        refused.append("target_modules")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        refused.append("r")
    if not isinstance(config.get("lora_alpha"), (int, float)):
        refused.append("lora_alpha")
    return refused


def lean_lora(directory: Path) -> dict | None:
    """adapter_config.json when it is a plain LoRA this module merges itself, else None
    (then peft loads it, and the log names the keys the merge refused)."""
    config = _read_json(directory / "adapter_config.json")
    if config is None:
        return None
    refused = lora_refusals(config)
    if refused:
        log.info("adapter %s: loading through peft; the lean merge does not understand %s",
                 directory, ", ".join(refused))
        return None
    return config


def merge_lora(weights: dict, adapter_dir: Path, config: dict) -> bool:
    """Add B @ A * scale to each targeted weight (in place of a copy). False when the
    adapter's tensors are not the plain pairs expected (then peft must load it)."""
    from safetensors.torch import load_file

    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    r = config["r"]
    scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    prefix = "base_model.model."
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.startswith(prefix) and key.endswith(suffix):
                pairs.setdefault(key[len(prefix):-len(suffix)], {})[part] = tensor
                break
        else:
            return False
    deltas = {}
    for module, pair in pairs.items():
        target = f"{module}.weight"
        if set(pair) != {"lora_A", "lora_B"} or target not in weights or \
                module.rsplit(".", 1)[-1] not in LORA_TARGETS:
            return False
        delta = (pair["lora_B"].float() @ pair["lora_A"].float()) * scale
        if delta.shape != weights[target].shape:
            return False
        deltas[target] = delta
    for target, delta in deltas.items():
        weights[target] = weights[target] + delta
    return True


def _load_lean(directory: Path, config: dict, adapter_dir: Path | None):
    """(weights, tokenizer) straight from the files, or None when the adapter needs peft."""
    import torch
    from safetensors.torch import load_file

    from melodyflowd.generate.fastllama import weight_names

    adapter_config = None
    if adapter_dir is not None:
        adapter_config = lean_lora(adapter_dir)
        if adapter_config is None:
            return None
    try:
        weights = {k: v.to(torch.float32) for k, v in
                   load_file(str(directory / "model.safetensors")).items()}
    except Exception as exc:  # noqa: BLE001 - safetensors' own error types vary by version
        raise ModelError(f"cannot load the model: {_first_line(exc)}",
                         file=str(directory / "model.safetensors")) from None
    if adapter_config is not None and not merge_lora(weights, adapter_dir, adapter_config):
        return None
    if config.get("tie_word_embeddings", False):      # LlamaConfig's default is untied
        weights["lm_head.weight"] = weights.get("model.embed_tokens.weight")
    if not weight_names(config) <= weights.keys() or weights["lm_head.weight"] is None:
        return None                                   # unexpected names: transformers decides
    try:
        tokenizer = LeanTokenizer(directory)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions
        raise ModelError(f"cannot load the tokenizer: {_first_line(exc)}",
                         file=str(directory / "tokenizer.json")) from None
    return weights, tokenizer


# -- the entry point --------------------------------------------------------------------

def load_model(spec: str | None = None, adapter: str | None = None, *,
               lean: bool = True) -> LoadedModel:
    """Load the embedded default (spec None or "default"), a local directory or a hub id.

    lean=False loads through transformers (and peft) even where the lean path could.
    """
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
    profile = resolve_profile(directory, name)
    adapter_dir = resolve_adapter(adapter, directory) if adapter else None
    if adapter_dir is not None and Path(adapter_dir).is_dir():
        try:
            check_folder_files(adapter_dir, "adapter", ModelError)
        except OSError as exc:
            raise ModelError(f"cannot read the adapter directory: {exc.strerror or exc}",
                             file=exc.filename or str(adapter_dir)) from None
    adapter_name = str(adapter_dir) if adapter_dir else None
    config = lean_config(directory) if lean and directory is not None else None
    found = _load_lean(directory, config, adapter_dir) if config is not None else None
    if found is not None:
        from melodyflowd.generate.fastllama import FastLlama

        weights, tokenizer = found
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        fast = FastLlama.from_weights(config, weights)

        def build() -> Any:
            model = _load_local(directory)[0]
            return _apply_adapter(model, adapter_dir) if adapter_dir else model

        return LoadedModel(_model=None, tokenizer=tokenizer, profile=profile, name=name,
                           adapter=adapter_name, path=str(directory), config=config,
                           _fast=fast, _build_model=build,
                           load_seconds=time.perf_counter() - started)
    if directory is not None:
        model, tokenizer = _load_local(directory)
        source = str(directory)
    else:
        model, tokenizer = _load_hub(name)
        source = name
    if adapter_dir:
        model = _apply_adapter(model, adapter_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(_model=model, tokenizer=tokenizer, profile=profile, name=name,
                       adapter=adapter_name, path=source, config=model.config.to_dict(),
                       load_seconds=time.perf_counter() - started)


def _load_local(directory: Path):
    try:
        return _load_pretrained(str(directory), local_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the model: {_first_line(exc)}",
                         file=str(directory)) from None


def adapter_for(spec: str | None, adapter: str | None, style: str | None) -> str | None:
    """The adapter a request loads: the one asked for, else the chart's style when the model
    has an adapter of that name."""
    return adapter or style_adapter(spec, style)


def style_adapter(spec: str | None, style: str | None) -> str | None:
    """The style name of a chart (e.g. "bebop") if the model has an adapter of that name."""
    if not style:
        return None
    directory = DEFAULT_MODEL_DIR if spec in (None, "default") else Path(spec).expanduser()
    return style if style in available_styles(directory) else None
