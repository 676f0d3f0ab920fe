"""Model loading: local directories, the default, hub ids offline, adapters, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from melodyflowd.errors import UserError
from melodyflowd.generate import model as model_mod
from melodyflowd.generate.model import load_model, resolve_profile, shipped_profile
from melodyflowd.generate.textformat import ModelProfile
from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _logits(loaded, text: str = "60 200 100 80 0\n") -> torch.Tensor:
    ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return loaded.model(input_ids=ids).logits[0, -1]


def test_tiny_tokenizer_round_trips_note_text(tiny_dir):
    loaded = load_model(str(tiny_dir))
    text = "Blues\npitch duration wait velocity instrument\n@F:lydian\n60 200 1050 80 0\n"
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded.tokenizer.decode(ids) == text
    assert loaded.tokenizer.unk_token_id not in ids
    assert loaded.tokenizer.convert_ids_to_tokens(ids).count("@F:") == 1


def test_load_local_directory_reads_profile(tiny_dir):
    loaded = load_model(str(tiny_dir))
    assert loaded.profile == ModelProfile.load(tiny_dir)
    assert loaded.profile.chord_markers is True
    assert loaded.name == str(tiny_dir)
    assert loaded.adapter is None
    assert not loaded.model.training
    assert _logits(loaded).shape == (len(loaded.tokenizer),)


def test_missing_directory_is_one_user_error(tmp_path):
    with pytest.raises(UserError) as info:
        load_model(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json",
                                     "tokenizer"])
def test_missing_file_named(tiny_dir, tmp_path, missing):
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    if missing == "tokenizer":
        (copy / "tokenizer.json").unlink()
        (copy / "tokenizer_config.json").unlink()
        expect = "tokenizer.json"
    else:
        (copy / missing).unlink()     # tokenizer.json alone: tokenizer_config.json remains
        expect = missing
    with pytest.raises(UserError) as info:
        load_model(str(copy))
    assert expect in str(info.value)


def test_pickle_weights_are_refused(tiny_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not loaded anyway")
    with pytest.raises(UserError) as info:
        load_model(str(copy))
    assert "pytorch_model.bin" in str(info.value) and "safetensors" in str(info.value)


def test_directory_without_profile_gets_default_profile(tiny_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    (copy / "melodyflow.json").unlink()
    loaded = load_model(str(copy))
    assert loaded.profile.header == "pitch duration wait velocity instrument"
    assert loaded.profile.chord_markers is False


def test_hub_id_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as info:
        load_model("melodyflow-test/definitely-not-cached")
    message = str(info.value)
    assert "melodyflow-test/definitely-not-cached" in message and "offline" in message
    assert "\n" not in message


def test_shipped_llama_midi_profile():
    profile = shipped_profile("dx2102/llama-midi")
    assert profile is not None
    assert profile.header == "pitch duration wait velocity instrument"
    assert profile.columns == ("pitch", "duration", "wait", "velocity", "program")
    assert profile.time_unit == "ms" and profile.chord_markers is False
    assert resolve_profile(None, "dx2102/llama-midi") == profile
    assert shipped_profile("someone/else") is None


def test_default_model(monkeypatch, tiny_dir, tmp_path):
    # The embedded default when it is installed; the code path is the same either way,
    # so point it at a missing directory and at the tiny model to test both answers.
    monkeypatch.setattr(model_mod, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(UserError, match="embedded default model"):
        load_model(None)
    monkeypatch.setattr(model_mod, "DEFAULT_MODEL_DIR", tiny_dir)
    loaded = load_model(None)
    assert loaded.name == "default" and loaded.path == str(tiny_dir)


def _save_adapter(base_dir: Path, out: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); make it change the output
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out, safe_serialization=True)


def test_adapter_by_style_name_and_by_directory(tiny_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    _save_adapter(copy, copy / "adapters" / "bebop")
    base = load_model(str(copy))
    styled = load_model(str(copy), adapter="bebop")
    by_dir = load_model(str(copy), adapter=str(copy / "adapters" / "bebop"))
    assert styled.adapter == str(copy / "adapters" / "bebop")
    assert not torch.allclose(_logits(base), _logits(styled))
    assert torch.allclose(_logits(styled), _logits(by_dir))
    assert model_mod.style_adapter(str(copy), "bebop") == "bebop"
    assert model_mod.style_adapter(str(copy), "swing") is None
    with pytest.raises(UserError) as info:
        load_model(str(copy), adapter="swing")
    assert "bebop" in str(info.value) and "swing" in str(info.value)


# -- the lean path (no transformers) ----------------------------------------------------

TEXTS = ["Blues\npitch duration wait velocity instrument\n@F:lydian\n60 200 1050 80 0\n",
         "bebop Bb 220\n", "<s>67 12 12\n</s>", "", "x@%&? 007\n\n"]


def _fast_logits(loaded, text: str = "60 200 100 80 0\n") -> torch.Tensor:
    ids = torch.tensor([loaded.tokenizer(text, add_special_tokens=False)["input_ids"]])
    fast = loaded.fast_forward
    fast.use_matmul("fp32")             # float32 products: compared with transformers'
    fast.new_cache(1, ids.shape[1])
    return fast.forward(ids, 0)[0]


def test_lean_load_matches_transformers(tiny_dir):
    lean = load_model(str(tiny_dir))
    full = load_model(str(tiny_dir), lean=False)
    assert lean.lean and not full.lean
    assert type(lean.tokenizer).__name__ == "LeanTokenizer"
    a, b = lean.tokenizer, full.tokenizer
    assert len(a) == len(b)
    assert a.convert_ids_to_tokens(list(range(len(a)))) == \
        b.convert_ids_to_tokens(list(range(len(b))))
    assert set(a.all_special_ids) == set(b.all_special_ids)
    assert set(a.all_special_tokens) == set(b.all_special_tokens)
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id", "pad_token",
                 "eos_token"):
        assert getattr(a, name) == getattr(b, name), name
    for text in TEXTS:
        for special in (True, False):
            ids = a(text, add_special_tokens=special)["input_ids"]
            assert ids == b(text, add_special_tokens=special)["input_ids"], (text, special)
            for skip in (True, False):
                assert a.decode(ids, skip_special_tokens=skip) == \
                    b.decode(ids, skip_special_tokens=skip)
    assert torch.equal(a("60 1\n", return_tensors="pt")["input_ids"],
                       b("60 1\n", return_tensors="pt")["input_ids"])
    assert lean.context_length == full.context_length > 0
    assert lean.n_params == full.n_params
    assert torch.allclose(_fast_logits(lean), _logits(full), atol=1e-5)
    # the transformers model of a lean load is built on demand, from the same files
    assert torch.allclose(_logits(lean), _logits(full), atol=1e-6)
    assert not lean.lean


def test_lean_lora_merge_matches_peft(tiny_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    _save_adapter(copy, copy / "adapters" / "bebop")
    lean = load_model(str(copy), adapter="bebop")
    merged_by_peft = load_model(str(copy), adapter="bebop", lean=False)
    base = load_model(str(copy))
    assert lean.lean and lean.adapter == merged_by_peft.adapter
    assert torch.allclose(_fast_logits(lean), _logits(merged_by_peft), atol=1e-5)
    assert not torch.allclose(_fast_logits(lean), _fast_logits(base), atol=1e-3)


def test_adapter_peft_must_handle_loads_through_peft(tiny_dir, tmp_path):
    """An adapter config the lean merge does not know (here: modules_to_save) is left to
    peft."""
    import json

    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    _save_adapter(copy, copy / "adapters" / "bebop")
    config_path = copy / "adapters" / "bebop" / "adapter_config.json"
    assert model_mod.lean_lora(config_path.parent) is not None
    config = json.loads(config_path.read_text())
    config["modules_to_save"] = ["lm_head"]
    config_path.write_text(json.dumps(config))
    assert model_mod.lean_lora(config_path.parent) is None


def test_lean_path_never_imports_transformers(tiny_dir):
    """Loading and composing the default kind of model costs no transformers import."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "from tests.support.tiny_model import hand_chart\n"
        "from melodyflowd.settings import GenerationSettings\n"
        "from melodyflowd.generate.compose import compose_bank\n"
        "from melodyflowd.generate.model import load_model\n"
        f"loaded = load_model({str(tiny_dir)!r})\n"
        "bank = compose_bank(hand_chart(2), loaded, GenerationSettings(variations=2, seed=3))\n"
        "assert all(p.notes for v in bank.variations for p in v)\n"
        "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.filterwarnings("ignore:Unexpected keyword arguments")  # peft on the new key
def test_lean_merge_refuses_an_unknown_adapter_key_by_name(tiny_dir, tmp_path, caplog):
    """The lean merge is an allow-list: a key it does not know (one a future peft may add)
    sends the adapter to peft, and the log names the key; the peft load still works."""
    import json

    copy = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    _save_adapter(copy, copy / "adapters" / "bebop")
    config_path = copy / "adapters" / "bebop" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    assert model_mod.lora_refusals(config) == []
    config["lora_new_scaling"] = "per_row"
    config_path.write_text(json.dumps(config))
    assert model_mod.lora_refusals(config) == ["lora_new_scaling"]
    with caplog.at_level("INFO", logger="melodyflowd.generate.model"):
        assert model_mod.lean_lora(config_path.parent) is None
    assert "lora_new_scaling" in caplog.text
    config["lora_new_scaling"] = None
    config["use_dora"] = True                    # a known key, set to what it cannot merge
    assert model_mod.lora_refusals(config) == ["lora_new_scaling", "use_dora"]
    loaded = load_model(str(copy), adapter="bebop")
    assert not loaded.lean                       # peft merged it


def test_weights_missing_the_expected_tensors_are_an_error_not_random_weights(tiny_dir,
                                                                              tmp_path):
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    save_file({"something.else": torch.zeros(2, 2)}, str(broken / "model.safetensors"))
    with pytest.raises(UserError, match="the weights lack .* tensors the model needs"):
        load_model(str(broken))


def test_a_model_file_that_is_a_fifo_is_refused_without_blocking(tiny_dir, tmp_path):
    import os

    broken = tmp_path / "fifo-model"
    shutil.copytree(tiny_dir, broken)
    (broken / "tokenizer_config.json").unlink()
    os.mkfifo(broken / "tokenizer_config.json")
    with pytest.raises(UserError, match="must be a regular file, this is a FIFO"):
        load_model(str(broken))
