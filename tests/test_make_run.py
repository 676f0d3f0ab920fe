"""`make run` in the clone: with the set-up already done (.venv and its stamp, as `make test`
leaves them) it starts melodyflowd without running pip, starts a dummy JACK server where
there is no MIDI system, and stops that server when melodyflowd stops (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.jack import JACKD, remove_jack_leftovers, write_bank

ROOT = Path(__file__).resolve().parent.parent


def _jackd_pids(server: str) -> list[int]:
    """jackd processes whose environment names `server`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"jackd" not in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"JACK_DEFAULT_SERVER={server}".encode() in env:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.jack
@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_make_run_starts_and_stops_its_own_jack_server(tmp_path) -> None:
    stamp = ROOT / ".venv" / ".installed-run"
    if JACKD is None or not stamp.exists() or subprocess.run(
            ["make", "-q", ".venv/.installed-run"], cwd=ROOT).returncode != 0:
        pytest.skip("no up-to-date .venv here (make run sets it up; this test does not)")
    chart = tmp_path / "song.yaml"
    chart.write_text('title: make run\ntempo: 120\ntime: 4/4\nchords: "| C7 |"\n')
    bank = write_bank(tmp_path / "bank.json", [[("C7", 0, 4)]], [[[(64, 0.0, "C7")]]],
                      title="make run")
    server = f"mfd-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_AUDIO_RESERVATION": "1"}
    env.pop("MAKEFLAGS", None)
    tag = uuid.uuid4().hex[:6]
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"CHART={chart}",
         f"ARGS=--phrases {bank} --in-name mr{tag}-in --out-name mr{tag}-out"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.rstrip("\n") for line in make.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and make.poll() is None and \
                not any(" ready: " in line for line in lines):
            time.sleep(0.1)
        assert any(" ready: " in line for line in lines), "\n".join(lines)
        assert not any("pip" in line for line in lines)            # set-up skipped
        assert any("dummy JACK server" in line for line in lines)
        assert len(_jackd_pids(server)) == 1
        os.killpg(make.pid, signal.SIGINT)                          # Ctrl-C in a terminal
        make.wait(timeout=30)
        reader.join(timeout=5)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        for pid in _jackd_pids(server):
            os.kill(pid, signal.SIGKILL)
        remove_jack_leftovers(server)
    assert any("SIGINT: stopping" in line for line in lines), "\n".join(lines)
    assert not _jackd_pids(server)                  # the server stopped with melodyflowd
