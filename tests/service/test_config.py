"""Config loading: defaults file <- --config file <- overrides, and one-line errors."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from melodyflowd.cli import tools_main
from melodyflowd.errors import UserError
from melodyflowd.service.config import (
    default_config_path,
    default_config_text,
    load_settings,
    reload_settings,
)
from melodyflowd.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(tmp_path: Path, text: str) -> UserError:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(path + ":")
    return info.value


def leaf_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def settings_keys(cls: type = Settings, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        if f.name in ("config_file", "overrides"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        if dataclasses.is_dataclass(default):
            keys |= settings_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


# --- the defaults file ------------------------------------------------------------------------

def test_config_default_yaml_is_the_packaged_file() -> None:
    assert (ROOT / "config" / "default.yaml").read_bytes() == \
        Path(default_config_path()).read_bytes()
    assert Path(default_config_path()).read_text(encoding="utf-8") == default_config_text()


def test_defaults_file_names_every_setting_and_nothing_else() -> None:
    data = yaml.safe_load(default_config_text())
    assert leaf_keys(data) == settings_keys()


def test_defaults_file_agrees_with_the_dataclass_defaults() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.ports.backend == "auto"
    assert settings.config_file is None and settings.overrides == ()


def test_every_setting_is_commented() -> None:
    # Each key line of the defaults file has a comment somewhere in the lines since the
    # previous key that had one: groups of keys may share a comment, none goes without.
    lines = default_config_text().splitlines()
    comment_seen = False
    uncommented = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment_seen = True
        elif stripped and ":" in stripped:
            if not comment_seen and not stripped.endswith(":"):
                uncommented.append(stripped)
            if not line.startswith(" ") or stripped.endswith(":"):
                comment_seen = False   # a new section needs its own comments
    assert uncommented == []


# --- precedence -------------------------------------------------------------------------------

def test_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "log_level: debug\n"
                           "ports:\n  backend: jack\n  in_name: keys in\n"
                           "generation:\n  variations: 8\n  temperature: 1\n")
    settings = load_settings(path, {"generation.variations": 2, "ports.in_name": None,
                                    "log_level": None, "generation.seed": 7})
    assert settings.log_level == "debug"               # file over default
    assert settings.ports.backend == "jack"
    assert settings.ports.in_name == "keys in"         # None override ignored
    assert settings.ports.out_name == "melodyflowd out"  # default kept
    assert settings.generation.variations == 2         # flag over file
    assert settings.generation.seed == 7               # flag over default
    assert settings.generation.temperature == 1.0
    assert isinstance(settings.generation.temperature, float)
    assert settings.config_file == path
    assert dict(settings.overrides) == {"generation.variations": 2, "generation.seed": 7}


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "engine:\n  channels: [1, 2]\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.engine.mode = "poly"  # type: ignore[misc]
    assert settings.engine.channels == (0, 1)
    hash(settings)


def test_channels_are_one_to_sixteen_in_files(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "engine:\n  channels: 16\n  out_channel: 1\n"
                                             "  controls:\n    channel: 10\n"))
    assert settings.engine.channels == (15,)
    assert settings.engine.out_channel == 0
    assert settings.engine.controls.channel == 9
    # overrides are already in Settings units (0-15)
    assert load_settings(None, {"engine.out_channel": 0}).engine.out_channel == 0


def test_controls_can_be_turned_off(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "engine:\n  controls:\n    panic: off\n"
                                             "    regenerate: null\n    next_variation: 30\n"))
    assert settings.engine.controls.panic is None
    assert settings.engine.controls.regenerate is None
    assert settings.engine.controls.next_variation == 30


def test_empty_file_and_empty_section_are_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "# nothing\n")).engine == Settings().engine
    assert load_settings(write(tmp_path, "engine:\n")).engine == Settings().engine


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = write(tmp_path, "chart: charts/autumn.yaml\nphrases: ~/bank.json\n"
                           "generation:\n  model: models/mine\n  adapter: bebop\n"
                           "  cache_dir: cache\n")
    settings = load_settings(path)
    assert settings.chart == str(tmp_path / "charts" / "autumn.yaml")
    assert settings.phrases == str(Path.home() / "bank.json")
    assert settings.generation.model == str(tmp_path / "models" / "mine")
    assert settings.generation.adapter == "bebop"      # a style name, not a folder here
    assert settings.generation.cache_dir == str(tmp_path / "cache")
    hub = load_settings(write(tmp_path, "generation:\n  model: someone/llama-midi\n"))
    assert hub.generation.model == "someone/llama-midi"


def test_reload_reads_the_file_again(tmp_path: Path) -> None:
    path = write(tmp_path, "engine:\n  mode: poly\n")
    first = load_settings(path, {"generation.seed": 3})
    Path(path).write_text("engine:\n  mode: mono\n", encoding="utf-8")
    again = reload_settings(first)
    assert again.engine.mode == "mono"
    assert again.generation.seed == 3


# --- errors: one line, file:line, what is accepted --------------------------------------------

def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "log_level: info\nlog_levle: debug\n")
    assert err.line == 2
    assert "unknown key 'log_levle'" in str(err)
    assert "did you mean 'log_level'" in str(err)
    assert "stats_interval" in str(err)               # lists what is accepted


def test_unknown_nested_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "engine:\n  mode: poly\n  controls:\n    regen: 20\n")
    assert (err.line, err.column) == (4, 5)
    assert "in engine.controls" in str(err)
    assert "regenerate" in str(err)


def test_wrong_type(tmp_path: Path) -> None:
    err = error_of(tmp_path, "generation:\n  variations: many\n")
    assert err.line == 2
    assert "generation.variations: 'many'" in str(err)
    assert "whole number from 1 to 64" in str(err)
    err = error_of(tmp_path, "engine:\n  split: yes\n")   # YAML's yes is a bool, not a note
    assert "engine.split: true" in str(err)
    err = error_of(tmp_path, "generation:\n  variations: 4.5\n")
    assert "4.5" in str(err)
    err = error_of(tmp_path, "engine:\n  contour: 1\n")
    assert "true or false" in str(err)


def test_out_of_range(tmp_path: Path) -> None:
    err = error_of(tmp_path, "\ngeneration:\n  temperature: 9\n")
    assert err.line == 3
    assert "from 0.05 to 5" in str(err)
    err = error_of(tmp_path, "generation:\n  top_p: 0\n")
    assert "greater than 0 and at most 1" in str(err)
    err = error_of(tmp_path, "engine:\n  controls:\n    regenerate: 128\n")
    assert err.line == 3 and "1 to 119" in str(err)


def test_bad_choice(tmp_path: Path) -> None:
    err = error_of(tmp_path, "engine:\n  mode: mon\n")
    assert err.line == 2
    assert "did you mean 'mono'" in str(err)
    assert "mono, poly" in str(err)
    err = error_of(tmp_path, "generation:\n  scale: blues\n")
    assert "chord-scale, pentatonic, chord-tones, chromatic" in str(err)


def test_bad_channel(tmp_path: Path) -> None:
    err = error_of(tmp_path, "engine:\n  channels: [1, 0]\n")
    assert "channel 0" in str(err) and "1-16" in str(err)
    err = error_of(tmp_path, "engine:\n  out_channel: 17\n")
    assert "channel 17" in str(err)


def test_settings_that_clash(tmp_path: Path) -> None:
    err = error_of(tmp_path, "generation:\n  high: 60\n")
    assert err.line == 2 and "octave" in str(err)      # blames the user's line, not the default
    err = error_of(tmp_path, "engine:\n  controls:\n    next_variation: 20\n")
    assert err.line == 3
    assert "CC 20 is already the regenerate control" in str(err)


def test_key_given_twice(tmp_path: Path) -> None:
    err = error_of(tmp_path, "engine:\n  mode: poly\n  mode: mono\n")
    assert err.line == 3 and "first on line 2" in str(err)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "engine:\n  mode: [poly\n")
    assert "not valid YAML" in str(err) and err.line is not None
    err = error_of(tmp_path, "- engine\n")
    assert "mapping of settings" in str(err)
    err = error_of(tmp_path, "engine: poly\n")
    assert "engine: expected a mapping" in str(err) and "mode" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_settings(str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in str(info.value) and "cannot read" in str(info.value)


def test_bad_override_is_a_user_error_and_unknown_override_a_bug() -> None:
    with pytest.raises(UserError) as info:
        load_settings(None, {"ports.backend": "oss"})
    assert "option ports.backend" in str(info.value)
    with pytest.raises(KeyError):
        load_settings(None, {"ports.nope": 1})


# --- the command line -------------------------------------------------------------------------

def run_daemon(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("melodyflowd")
    command = [exe] if exe else [sys.executable, "-c",
                                 "from melodyflowd.cli import daemon_main; daemon_main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def test_daemon_with_a_bad_config_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "chart: song.yaml\nengine:\n  mode: poly\n  split: C4\n")
    result = run_daemon("--config", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{path}:4:" in lines[0]
    assert "engine.split: 'C4'" in lines[0]
    assert "Traceback" not in result.stderr


def test_melodyflow_config_prints_and_checks(tmp_path: Path) -> None:
    result = CliRunner().invoke(tools_main, ["config"])
    assert result.exit_code == 0
    assert result.output == default_config_text()
    good = write(tmp_path, result.output, "copy.yaml")
    assert CliRunner().invoke(tools_main, ["config", good]).exit_code == 0
    bad = write(tmp_path, "ports:\n  backend: midi\n", "bad.yaml")
    result = CliRunner().invoke(tools_main, ["config", bad])
    assert result.exit_code == 2
    assert f"{bad}:2:" in result.output


def test_the_readme_config_example_loads_and_its_error_is_the_real_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    example = next(b for b in blocks if b.startswith("# my.yaml\n"))
    monkeypatch.chdir(tmp_path)
    Path("my.yaml").write_text(example, encoding="utf-8")
    settings = load_settings("my.yaml")
    assert settings.engine.mode == "poly" and settings.engine.channels == (0,)
    assert settings.chart == str(tmp_path / "charts" / "autumn-leaves.yaml")
    Path("my.yaml").write_text(example.replace("mode: poly", "mode: mon"), encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_settings("my.yaml")
    assert f"melodyflowd: error: {info.value}\n" in readme


@pytest.mark.slow
def test_an_installed_copy_finds_its_default_config(tmp_path: Path) -> None:
    """`pip install .` (not editable) into a fresh venv: the packaged defaults come along."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "melodyflowd", source / "melodyflowd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--no-deps", str(source)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    run = subprocess.run([str(venv / "bin" / "melodyflow"), "config"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == default_config_text()
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "from melodyflowd.service.config import default_config_path as p; "
                            "print(p())"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    version = subprocess.run([str(venv / "bin" / "melodyflowd"), "--version"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert version.returncode == 0 and "melodyflowd, version" in version.stdout


@pytest.mark.parametrize("cc", [120, 121, 123, 127, 0, 32])
def test_control_ccs_cannot_take_a_cc_the_engine_must_pass_on(tmp_path: Path, cc: int) -> None:
    for name in ("panic", "regenerate", "select_variation"):
        err = error_of(tmp_path, f"engine:\n  controls:\n    {name}: {cc}\n")
        assert err.line == 3 and f"engine.controls.{name}" in str(err)
        assert "1 to 119" in str(err)


@pytest.mark.parametrize("value, ok", [(0, True), (0.25, True), (60.5, True), (86400, True),
                                       (0.000001, False), (0.2, False), (86401, False),
                                       (-1, False)])
def test_stats_interval_is_off_or_a_sane_number_of_seconds(tmp_path: Path, value, ok) -> None:
    text = f"stats_interval: {value}\n"
    if ok:
        assert load_settings(write(tmp_path, text)).stats_interval == value
    else:
        assert "stats_interval" in str(error_of(tmp_path, text))


def test_a_port_name_too_long_for_jack_is_one_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "ports:\n  in_name: " + "x" * 64 + "\n")
    assert "at most 63 bytes" in str(err)
    assert load_settings(write(tmp_path, "ports:\n  in_name: " + "x" * 63 + "\n"))
