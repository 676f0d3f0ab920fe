"""Fault injection on the real thing: melodyflowd as a subprocess on a private JACK
server, its real spawned generator child, a tiny model built in the test, a MIDI peer.

Where another test already covers a fault, these go one step further instead of
repeating it:
- the generator child killed: tests/generate/test_worker.py kills the child of a bare
  GeneratorClient, and tests/service/test_robustness_e2e.py kills the daemon's child right after
  SIGUSR1 and checks that notes keep coming; here the kill waits until the child is
  provably mid-generation (a progress line of the new bank, not the last), and the
  pitches that come out are checked: the old bank's while the new child works, then the
  new bank's (as stored in the cache) after the swap;
- a damaged cache file: tests/generate/test_cache.py and tests/generate/test_worker.py
  damage the file under the cache module and the worker; here the daemon restarts on it
  (it plays, the file is written again, and the next start plays from the cache);
- a model directory missing a file: tests/generate/test_model.py checks load_model's UserError;
  here the whole command line: exit status 2 and one line on stderr that names the file
  (these found two bugs, since fixed: tokenizer.json went unnamed, and the line came
  twice, once from the generator child's log);
- an invalid chart + SIGHUP: tests/service/test_daemon_e2e.py covers it for a saved bank
  (--phrases); here with the generator, where a good SIGHUP regenerates, so an invalid
  one must neither regenerate nor stop the music;
- the JACK server restarted: tests/live/test_ports_jack.py checks Ports.server_gone; here the
  daemon itself: it says so and exits with status 1 (so that systemd's
  Restart=on-failure starts it again on the new server), and a new start plays.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.service.test_daemon_e2e import write_files
from tests.support.jack import (
    DAEMON_CMD,
    DaemonProcess,
    JackServer,
    generator_child,
    note_balance,
    note_ons,
    take,
)
from tests.support.jack_registry import reclaim_stale_servers

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.jack

# 32 bars: long enough that the tiny model takes a moment to write 8 variations of it.
LONG_CHART = ('title: faults\ntempo: 120\ntime: 4/4\nchords: "'
              + " | ".join(["Dm7 G7", "Cmaj7", "Cm7 F7", "Bbmaj7", "Ebm7 Ab7", "Dbmaj7",
                            "Dm7b5 G7", "Cm6"] * 4) + '"\n')


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("faults-model") / "tiny")


def _config(tmp_path: Path, variations: int = 2) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"generation:\n  cache_dir: {tmp_path / 'cache'}\n"
                      f"  variations: {variations}\n")
    return config


def long_chart_daemon(jack_server, tmp_path: Path, model: Path, variations: int = 8
                      ) -> DaemonProcess:
    """The daemon writing LONG_CHART's bank with `model` (seed 3) into tmp_path's cache."""
    chart = tmp_path / "long.yaml"
    chart.write_text(LONG_CHART)
    return DaemonProcess(jack_server, tmp_path, [
        "--chart", str(chart), "--model", str(model), "--seed", "3",
        "--config", str(_config(tmp_path, variations=variations))])


def _keys(peer, count: int, channel: int = 0, pause: float = 0.03) -> None:
    for i in range(count):
        peer.send([0x90 | channel, 60 + i % 12, 90])
        time.sleep(pause)
        peer.send([0x80 | channel, 60 + i % 12, 0])
        time.sleep(pause)


def _bank_pitches(path: Path) -> set[int]:
    from melodyflowd.music.phrases import load_bank

    bank = load_bank(path)
    return {n.pitch for variation in bank.variations for phrase in variation
            for n in phrase.notes}


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*.json"))


@pytest.mark.slow
def test_generator_child_sigkilled_mid_generation(jack_server, tmp_path, tiny_model):
    daemon = long_chart_daemon(jack_server, tmp_path, tiny_model)
    with take(daemon, ready_timeout=180, settle=None) as run:
        old_files = _cache_files(tmp_path)
        assert len(old_files) == 1, old_files
        old_pitches = _bank_pitches(old_files[0])
        first_child = generator_child(daemon.proc.pid)
        assert first_child is not None, daemon.log()
        peer = run.peer
        _keys(peer, 4)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 4, timeout=3), daemon.log()

        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGUSR1)
        # Mid-generation: the child has started writing the new bank and is not done.
        seen = None
        deadline = time.monotonic() + 60
        while seen is None and time.monotonic() < deadline:
            for line in daemon.lines[mark:]:
                found = re.search(r"generator: generating (\d+)/(\d+)", line)
                if found and int(found.group(1)) < int(found.group(2)):
                    seen = line
            time.sleep(0.01)
        assert seen is not None, daemon.log()
        os.kill(first_child, signal.SIGKILL)
        assert daemon.wait_log("was killed by SIGKILL", timeout=10, after=mark), daemon.log()
        assert not any("swaps in at the next bar line" in line for line in daemon.lines[mark:])

        # The old bank keeps playing while the new child starts and writes the bank again.
        peer.clear()
        _keys(peer, 8)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 8, timeout=3), daemon.log()
        assert {p for _, p in note_ons(peer.messages())} <= old_pitches

        assert daemon.wait_log("swaps in at the next bar line", timeout=120, after=mark), \
            daemon.log()
        second_child = generator_child(daemon.proc.pid)
        assert second_child is not None and second_child != first_child
        new_files = [f for f in _cache_files(tmp_path) if f not in old_files]
        assert new_files, "the regenerated bank was not stored"
        # Past the next bar line (tempo 120: a bar is 2 s) the new bank plays.
        time.sleep(2.2)
        new_pitches = _bank_pitches(new_files[0])
        peer.clear()
        _keys(peer, 8)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 8, timeout=3), daemon.log()
        assert {p for _, p in note_ons(peer.messages())} <= new_pitches
        alive = daemon.proc.poll() is None
        got = peer.messages()        # before the stop: its note-offs must not hide a stuck note
    assert alive and run.status == 0, daemon.log()
    assert note_balance(got) == ({}, [])
    assert "Traceback" not in daemon.log()
    assert re.search(r"bank swaps 1\b", daemon.log()), daemon.log()


def test_jack_server_restarted_daemon_exits_1_and_a_restart_plays(tmp_path):
    from tests.support.jack import jack_available

    if (reason := jack_available()) is not None:
        pytest.skip(reason)
    reclaim_stale_servers()
    chart, bank = write_files(tmp_path)
    server = JackServer().start()
    daemon = again = None
    try:
        daemon = DaemonProcess(server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
        daemon.wait_ready()
        peer = daemon.peer()
        _keys(peer, 2)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 2, timeout=3), daemon.log()
        peer.close()

        # The server goes away and a new one of the same name comes up.
        name = server.name
        server.stop()
        server = JackServer(name=name).start()
        daemon.proc.wait(timeout=15)
        daemon.stop()
        assert daemon.proc.returncode == 1, daemon.log()
        log = daemon.log()
        assert re.search(r"the JACK server (was restarted|stopped)", log), log
        assert "restarts melodyflowd" in log
        assert "Traceback" not in log

        # What systemd does next (Restart=on-failure): the same command on the new server.
        again = DaemonProcess(server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
        with take(again, settle=None) as run:
            _keys(run.peer, 3)
            assert run.peer.wait_for(
                lambda got: len(note_ons(got)) >= 3 and not note_balance(got)[0],
                timeout=3), again.log()
        assert run.status == 0, again.log()
    finally:
        for proc in (daemon, again):
            if proc is not None:
                proc.stop()
        server.stop()
    unit = (ROOT / "systemd" / "melodyflowd.service").read_text()
    assert re.search(r"^Restart=on-failure", unit, re.M)


@pytest.mark.slow
def test_damaged_cache_file_is_ignored_and_rebuilt_by_the_daemon(jack_server, tmp_path,
                                                                  tiny_model):
    chart, _ = write_files(tmp_path)
    args = ["--chart", str(chart), "--model", str(tiny_model), "--seed", "9",
            "--config", str(_config(tmp_path))]

    def start() -> DaemonProcess:
        daemon = DaemonProcess(jack_server, tmp_path, args)
        daemon.wait_ready(timeout=180)
        return daemon

    first = start()
    assert first.stop() == 0, first.log()
    files = _cache_files(tmp_path)
    assert len(files) == 1, files
    good = files[0].read_text()
    files[0].write_text(good[: len(good) // 2])            # cut in half: not JSON any more

    second = DaemonProcess(jack_server, tmp_path, args)
    with take(second, ready_timeout=180, settle=None) as run:
        _keys(run.peer, 3)
        assert run.peer.wait_for(lambda got: len(note_ons(got)) >= 3, timeout=3), \
            second.log()
    assert run.status == 0, second.log()
    log = second.log()
    assert "ignoring damaged cache file" in log, log
    assert re.search(r"phrase bank ready in [\d.]+ s \(start-up\)", log), log  # generated
    assert files[0].read_text() == good                    # same inputs, same seed: rebuilt
    _bank_pitches(files[0])                                # and a valid bank again

    third = start()
    assert third.stop() == 0, third.log()
    assert "from the cache" in third.log(), third.log()
    assert "ignoring" not in third.log()


def _run_with_broken_model(server, tmp_path: Path, model: Path, missing: str
                           ) -> subprocess.CompletedProcess:
    broken = tmp_path / "broken-model"
    shutil.copytree(model, broken)
    (broken / missing).unlink()
    chart, _ = write_files(tmp_path)
    return subprocess.run(
        [*DAEMON_CMD, "--chart", str(chart), "--model", str(broken), "--backend", "jack",
         "--config", str(_config(tmp_path)), "--log-level", "warning",
         "--in-name", "mfd broken in", "--out-name", "mfd broken out"],
        env={**server.env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=180, cwd=tmp_path)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_model_directory_missing_a_file_exit_2_naming_it(jack_server, tmp_path, tiny_model,
                                                         missing):
    proc = _run_with_broken_model(jack_server, tmp_path, tiny_model, missing)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines and "error:" in lines[-1], proc.stderr
    assert str(tmp_path / "broken-model") in lines[-1], lines[-1]
    assert missing in lines[-1], lines[-1]
    assert not any("mfd broken" in p for p in jack_server.ports())     # no ports were left


def test_model_directory_missing_a_file_is_one_line(jack_server, tmp_path, tiny_model):
    proc = _run_with_broken_model(jack_server, tmp_path, tiny_model, "model.safetensors")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr


@pytest.mark.slow
def test_invalid_chart_and_sighup_with_the_generator_keeps_playing(jack_server, tmp_path,
                                                                    tiny_model):
    chart, _ = write_files(tmp_path)
    good = chart.read_text()
    daemon = DaemonProcess(jack_server, tmp_path, [
        "--chart", str(chart), "--model", str(tiny_model), "--seed", "4",
        "--config", str(_config(tmp_path))])
    with take(daemon, ready_timeout=180, settle=None) as run:
        peer = run.peer
        _keys(peer, 3)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 3, timeout=3), daemon.log()

        chart.write_text(good.replace("G7", "G7 Q#lydian"))
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log("chart reload failed", timeout=5, after=mark), daemon.log()
        error = next(line for line in daemon.lines[mark:] if "chart reload failed" in line)
        assert "ERROR chart reload failed" in error and "Q#lydian" in error, error
        assert re.search(re.escape(chart.name) + r":\d+", error), error     # file:line
        time.sleep(0.5)
        assert not any("regenerating" in line for line in daemon.lines[mark:]), daemon.log()

        peer.clear()
        _keys(peer, 6)
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 6, timeout=3), \
            (peer.messages(), daemon.log())
        assert daemon.proc.poll() is None

        # Fixed again: the next SIGHUP reloads and regenerates as usual.
        chart.write_text(good)
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log("swaps in at the next bar line", timeout=120, after=mark), \
            daemon.log()
        assert not any("reload failed" in line for line in daemon.lines[mark:])
        got = peer.messages()        # before the stop: its note-offs must not hide a stuck note
    assert run.status == 0, daemon.log()
    assert note_balance(got) == ({}, [])
    assert "Traceback" not in daemon.log()
