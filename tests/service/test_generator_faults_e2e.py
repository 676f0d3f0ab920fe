"""The daemon and its generator child under faults, through JACK: a child killed again and
again while starting (exit status 1: retry, not the user's error), a child stopped
(SIGSTOP: logged, replaced, the new bank comes), a long chart (the first bars play at once,
the rest follows)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.service.test_faults import long_chart_daemon
from tests.service.test_robustness_e2e import _play_notes
from tests.support.jack import generator_child, note_balance, take

pytestmark = [pytest.mark.jack, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("gen-faults-model") / "tiny")


def test_generator_killed_three_times_while_starting_is_exit_1_not_2(jack_server, tmp_path,
                                                                      tiny_model):
    """The OOM killer, say: not the user's file or setting, so systemd must try again."""
    daemon = long_chart_daemon(jack_server, tmp_path, tiny_model)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while daemon.proc.poll() is None and time.monotonic() < deadline:
            child = generator_child(daemon.proc.pid)
            if child is not None and child not in killed:
                killed.append(child)
                os.kill(child, signal.SIGKILL)
            time.sleep(0.05)
        status = daemon.proc.wait(timeout=30)
    finally:
        daemon.stop()
    assert len(killed) == 3, (killed, daemon.log())
    assert status == 1, daemon.log()
    ours = [line for line in daemon.lines if line.startswith("melodyflowd: error:")]
    assert len(ours) == 1 and "lost 3 times" in ours[0], daemon.log()
    assert "Traceback" not in daemon.log()


def test_a_stopped_generator_is_logged_and_replaced_and_the_new_bank_plays(jack_server,
                                                                          tmp_path, tiny_model):
    daemon = long_chart_daemon(jack_server, tmp_path, tiny_model)
    with take(daemon, ready_timeout=180, settle=None) as run:
        peer = run.peer
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGUSR1)
        assert daemon.wait_log("generator: generating", timeout=60, after=mark), daemon.log()
        stopped = generator_child(daemon.proc.pid)
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        at = time.monotonic()
        assert daemon.wait_log("did not answer", timeout=30, after=mark), daemon.log()
        print(f"a stopped generator was reported after {time.monotonic() - at:.1f} s")
        assert _play_notes(peer, 4) == 4, daemon.log()  # the old bank plays meanwhile
        assert daemon.wait_log("swaps in at the next bar line", timeout=120, after=mark), \
            daemon.log()
        assert generator_child(daemon.proc.pid) not in (None, stopped)
        alive = daemon.proc.poll() is None
    assert alive and run.status == 0, daemon.log()
    assert note_balance(peer.messages())[0] == {}


def test_a_long_chart_plays_its_first_bars_while_the_rest_is_written(jack_server, tmp_path):
    """A model with a short context: the chart is many parts, written run after run; the
    daemon is ready (ports open, playing) on the first part, and the whole bank follows."""
    from tests.support.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "short", context=200)
    daemon = long_chart_daemon(jack_server, tmp_path, model, variations=4)
    daemon.wait_ready(timeout=180)
    ready_at = len(daemon.lines)
    with take(daemon, settle=None) as run:
        assert any("ready, playing them; the rest follows" in line
                   for line in daemon.lines[:ready_at]), daemon.log()
        peer = run.peer
        assert _play_notes(peer, 4) == 4, daemon.log()
        assert daemon.wait_log("phrase bank complete", timeout=180), daemon.log()
        alive = daemon.proc.poll() is None
    assert alive and run.status == 0, daemon.log()
    assert note_balance(peer.messages())[0] == {}
