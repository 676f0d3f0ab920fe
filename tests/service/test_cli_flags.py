"""The daemon's flags for settings (--mode, --split, --channels, --scale, --temperature,
--instrument), and the log's timestamps outside the journal."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from melodyflowd.cli import daemon_main
from tests.support.jack import DaemonProcess, note_ons, take, write_bank

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|ERROR) ")


def settings_from(monkeypatch, *args: str):
    """The Settings `melodyflowd ARGS` would run with (the daemon itself is not started)."""
    import melodyflowd.service.daemon as daemon

    seen = []
    monkeypatch.setattr(daemon, "run", lambda settings: seen.append(settings) or 0)
    result = CliRunner().invoke(daemon_main, ["--chart", "song.yaml", *args])
    return result, (seen[0] if seen else None)


def test_flags_set_their_settings(monkeypatch) -> None:
    result, settings = settings_from(
        monkeypatch, "--mode", "poly", "--split", "Bb3", "--channels", "1,3-4",
        "--scale", "pentatonic", "--temperature", "0.7", "--variations", "6",
        "--instrument", "trumpet",
        "--connect-in", "keys", "--connect-in", "pads", "--connect-out", "fluid*")
    assert result.exit_code == 0, result.output
    assert settings.engine.mode == "poly" and settings.engine.split == 58
    assert settings.engine.channels == (0, 2, 3)
    assert settings.generation.scale == "pentatonic"
    assert settings.generation.temperature == 0.7 and settings.generation.variations == 6
    assert settings.generation.instrument == "trumpet"
    assert settings.ports.connect_in == ("keys", "pads")
    assert settings.ports.connect_out == ("fluid*",)
    assert settings.ports.backend == "auto"
    _, plain = settings_from(monkeypatch)
    assert plain.engine.channels == () and plain.engine.split is None
    assert plain.ports.connect_in == ()
    _, every = settings_from(monkeypatch, "--split", "60", "--channels", "all")
    assert every.engine.split == 60 and every.engine.channels == tuple(range(16))


@pytest.mark.parametrize("args, words", [
    (["--split", "H4"], ["H4", "C4 is middle C"]),
    (["--channels", "17"], ["'17'", "1-16"]),
    (["--channels", "3-1"], ["'3-1'", "1-16"]),
    (["--mode", "mon"], ["'mon'", "mono", "poly"]),
    (["--temperature", "9"], ["9", "5.0"]),
])
def test_a_bad_flag_value_is_one_clear_error(monkeypatch, args, words) -> None:
    result, settings = settings_from(monkeypatch, *args)
    assert result.exit_code == 2 and settings is None
    for word in words:
        assert word in result.output


@pytest.mark.jack
def test_channels_and_split_flags_choose_what_is_remapped(jack_server, tmp_path) -> None:
    chart = tmp_path / "song.yaml"
    chart.write_text('title: flags\ntempo: 120\ntime: 4/4\nchords: "| Cmaj7 |"\n')
    bank = write_bank(tmp_path / "bank.json", [[("Cmaj7", 0, 4)]],
                      [[[(88, 0.0, "Cmaj7"), (91, 2.0, "Cmaj7")]]], title="flags")
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases",
                                                   str(bank), "--channels", "2",
                                                   "--split", "C4"])
    with take(daemon, settle=None) as run:
        for message in ([0x90, 64, 100], [0x91, 59, 100], [0x91, 64, 100], [0x99, 36, 100]):
            run.peer.send(message)                 # ch 1; ch 2 below C4; ch 2; ch 10 drums
        assert run.peer.wait_for(lambda got: len(note_ons(got)) >= 4), daemon.log()
    assert run.status == 0, daemon.log()
    assert note_ons(run.peer.messages()) == [(0, 64), (1, 59), (1, 88), (9, 36)]
    # Not the journal (a pipe): every log line carries the time.
    logged = [line for line in daemon.lines if " INFO " in line]
    assert logged and all(STAMP.match(line) for line in logged), daemon.lines[:5]


LOG_ONE_LINE = ("from melodyflowd.service.daemon import setup_logging, log\n"
                "setup_logging('info')\nlog.info('hello')\n")


def test_no_timestamps_when_stderr_is_the_journal(tmp_path) -> None:
    """systemd sets JOURNAL_STREAM to the device:inode of the stream it gives as stderr;
    the journal stamps lines itself. A file stands in for that stream here."""
    path = tmp_path / "stderr.txt"
    with open(path, "w") as err:
        info = os.fstat(err.fileno())
        for stream, stamped in ((f"{info.st_dev}:{info.st_ino}", False),
                                (f"{info.st_dev}:{info.st_ino + 1}", True), ("", True)):
            err.seek(0)
            err.truncate()
            subprocess.run([sys.executable, "-c", LOG_ONE_LINE], stderr=err, check=True,
                           env={**os.environ, "JOURNAL_STREAM": stream}, timeout=60)
            line = path.read_text().strip()
            assert line.endswith("INFO hello")
            assert bool(STAMP.match(line)) is stamped, (stream, line)
