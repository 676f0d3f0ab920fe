"""Every file melodyflowd reads is a regular file of a bounded size, read without blocking;
hostile JSON/YAML (deep nesting, giant numbers) is one clear line, exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from melodyflowd.errors import UserError
from melodyflowd.files import CHART_MAX_BYTES, read_bytes
from melodyflowd.music.chart import ChartError, load_chart
from melodyflowd.music.phrases import BankError, load_bank
from melodyflowd.service.config import load_settings
from tests.service.test_daemon_e2e import write_files

ROOT = Path(__file__).resolve().parents[1]


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    return {"fifo": fifo, "device via symlink": zero, "directory": tmp_path}


def finishes(call, *args) -> BaseException | None:
    """Run call(*args) in a thread; fail the test when it has not returned in 10 s (a read
    that blocks on a FIFO or never ends on /dev/zero)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(*args)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, f"{call.__name__}{args} did not return in 10 s"
    return outcome[0]


@pytest.mark.parametrize("loader, error", [(load_chart, ChartError), (load_bank, BankError),
                                           (load_settings, UserError)],
                         ids=["chart", "bank", "config"])
def test_fifos_devices_and_directories_are_refused_without_blocking(tmp_path, loader, error):
    for kind, path in special_files(tmp_path).items():
        raised = finishes(loader, str(path))
        assert isinstance(raised, error), (kind, raised)
        assert "regular file" in str(raised) or "directory" in str(raised), raised


def test_a_file_over_its_limit_is_refused_naming_the_limit(tmp_path):
    chart = tmp_path / "big.yaml"
    chart.write_text("title: x\n" + "# padding\n" * (CHART_MAX_BYTES // 10 + 1))
    with pytest.raises(ChartError, match=r"over the limit of 1\.0 MB"):
        load_chart(str(chart))
    assert read_bytes(tmp_path / "big.yaml", "the chart", 2 * CHART_MAX_BYTES)


def hostile(tmp_path: Path) -> dict[str, Path]:
    files = {}
    deep = "[" * 100_000 + "]" * 100_000
    files["bank nested 100,000 deep"] = tmp_path / "deep.json"
    files["bank nested 100,000 deep"].write_text(deep)
    files["bank with a 5,000-digit integer"] = tmp_path / "bigint.json"
    files["bank with a 5,000-digit integer"].write_text(
        json.dumps({"format": "melodyflow-bank/1"})[:-1] + ', "seed": ' + "9" * 5000 + "}")
    return files


@pytest.mark.parametrize("what", ["bank nested 100,000 deep", "bank with a 5,000-digit integer"])
def test_hostile_json_banks_are_one_line(tmp_path, what):
    path = hostile(tmp_path)[what]
    with pytest.raises(BankError) as info:
        load_bank(str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("text", ["tempo: " + "[" * 20_000 + "]" * 20_000,
                                  "tempo: " + "9" * 5000,
                                  "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 3000))],
                         ids=["flow nesting", "giant integer", "block nesting"])
def test_hostile_yaml_charts_and_configs_are_one_line(tmp_path, text):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(ChartError) as chart_error:
        load_chart(str(path))
    with pytest.raises(UserError) as config_error:
        load_settings(str(path))
    for error in (chart_error.value, config_error.value):
        assert "\n" not in str(error) and str(path) in str(error)


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "from melodyflowd.cli import daemon_main; "
                           "daemon_main(prog_name='melodyflowd')", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_daemon_exits_2_with_one_line_for_each_hostile_file(tmp_path):
    chart, bank = write_files(tmp_path)
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("tempo: " + "[" * 20_000 + "]" * 20_000)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {
        "phrases nested": ["--chart", str(chart), "--phrases",
                           str(hostile(tmp_path)["bank nested 100,000 deep"])],
        "phrases giant integer": ["--chart", str(chart), "--phrases",
                                  str(hostile(tmp_path)["bank with a 5,000-digit integer"])],
        "chart nested": ["--chart", str(deep_yaml), "--phrases", str(bank)],
        "config nested": ["--config", str(deep_yaml), "--chart", str(chart)],
        "chart FIFO": ["--chart", str(fifo), "--phrases", str(bank)],
        "phrases /dev/zero": ["--chart", str(chart), "--phrases", "/dev/zero"],
    }
    for name, args in cases.items():
        done = run_cli([*args, "--backend", "jack"], tmp_path)
        assert done.returncode == 2, (name, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("melodyflowd: error: "), (name, lines)
        assert "JACK" not in lines[0], (name, lines)       # the file's error, not the MIDI's


@pytest.mark.parametrize("name", ["tune.xml", "tune.musicxml", "tune.mxl", "playlist.html",
                                  "chart"])
def test_import_sources_that_are_fifos_or_devices_are_refused_without_blocking(tmp_path,
                                                                               name):
    from melodyflowd.music import sources

    for kind, target in (("fifo", None), ("device", "/dev/zero")):
        path = tmp_path / kind / name
        path.parent.mkdir(exist_ok=True)
        if target is None:
            os.mkfifo(path)
        else:
            path.symlink_to(target)
        raised = finishes(sources.load_chart, str(path))
        assert isinstance(raised, UserError), (kind, name, raised)
        assert "regular file" in str(raised) and "\n" not in str(raised), raised


def test_a_compressed_musicxml_that_unpacks_too_big_is_refused(tmp_path):
    import zipfile

    from melodyflowd.files import UNPACKED_MAX_BYTES
    from melodyflowd.music import sources

    path = tmp_path / "bomb.mxl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("score.musicxml", b"<" + b" " * (UNPACKED_MAX_BYTES + 1))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UserError, match="unpacks to .* over the limit"):
        sources.load_chart(str(path))
