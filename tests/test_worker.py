"""The generator child process, for real: spawned, with a tiny model built in the test."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from melodyflowd.config import GenerationSettings, Settings
from melodyflowd.generate.worker import (
    BankReady,
    ChildDied,
    Failed,
    GeneratorClient,
    Progress,
)

CHART = """title: Worker blues
tempo: 160
time: 4/4
chords: "| C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 | G7 |"
"""
LONG_CHART = """title: Long form
tempo: 160
chords: "| C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 | G7 |\
 Dm7 G7 | Cmaj7 | Em7b5 A7 | Dm7 | G7 | C7 | Fmaj7 | Bb7 |\
 C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 | G7 |"
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture()
def chart_file(tmp_path: Path) -> Path:
    path = tmp_path / "blues.yaml"
    path.write_text(CHART)
    return path


def make_settings(chart: Path, model: Path, cache_dir: Path, **generation) -> Settings:
    gen = GenerationSettings(model=str(model), variations=2, seed=11,
                             cache_dir=str(cache_dir), **generation)
    return Settings(chart=str(chart), generation=gen)


def wait_answer(client: GeneratorClient, request_id: int, timeout: float = 150.0,
                hook=None) -> tuple[BankReady | Failed, list]:
    """Poll like the daemon's main loop until request_id is answered; all events seen."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll():
            seen.append(event)
            if hook is not None:
                hook(event)
            if isinstance(event, BankReady | Failed) and event.request_id == request_id:
                return event, seen
        time.sleep(0.02)
    raise AssertionError(f"request {request_id} not answered in {timeout} s; saw {seen}")


def small_chart():
    from melodyflowd.chart import Bar, Chart, ChordSpan
    from melodyflowd.theory import parse_chord

    spans = [ChordSpan(parse_chord(s), 0.0, 4.0) for s in ("C7", "F7", "G7")]
    return Chart("Hand-built", 120.0, (4, 4), None, None,
                 tuple(Bar(i, "A", (span,)) for i, span in enumerate(spans)))


def test_a_model_that_cannot_load_fails_the_request_not_the_child(tmp_path):
    missing_model = tmp_path / "no-such-model"
    settings = Settings(generation=GenerationSettings(model=str(missing_model), seed=1,
                                                      cache_dir=str(tmp_path / "cache")))
    client = GeneratorClient(settings, threads=1)
    try:
        rid = client.request_chart(small_chart())
        assert client.pid is not None                    # the first miss spawned the child
        answer, seen = wait_answer(client, rid)
        assert isinstance(answer, Failed), answer
        assert str(missing_model) in answer.message and "\n" not in answer.message
        assert any(isinstance(e, Progress) and e.request_id == rid
                   and e.message.startswith("loading model") for e in seen)
        assert client.alive and not client.model_ready and client.pending == ()
        again = client.request_chart(small_chart())      # still answered by the same child
        answer, _ = wait_answer(client, again)
        assert isinstance(answer, Failed) and answer.request_id == again
        assert client.restarts == 0
    finally:
        client.stop()
        client.stop()                                    # idempotent
    assert not client.alive and client.pid is None


def test_child_killed_while_loading_is_restarted_and_request_resent(tmp_path):
    missing_model = tmp_path / "no-such-model"
    settings = Settings(generation=GenerationSettings(model=str(missing_model), seed=1,
                                                      cache_dir=str(tmp_path / "cache")))
    with GeneratorClient(settings, threads=1) as client:
        first_pid = client.pid
        rid = client.request_chart(small_chart())
        os.kill(first_pid, signal.SIGKILL)
        answer, seen = wait_answer(client, rid)
        died = [e for e in seen if isinstance(e, ChildDied)]
        assert len(died) == 1 and died[0].exitcode == -signal.SIGKILL
        assert "SIGKILL" in died[0].message
        # the new child got the request again and answered it (the model is missing)
        assert isinstance(answer, Failed) and str(missing_model) in answer.message
        assert client.restarts == 1 and client.pid != first_pid and client.alive


def test_cancelled_request_gets_no_answer(tmp_path):
    settings = Settings(generation=GenerationSettings(model=str(tmp_path / "none"), seed=1,
                                                      cache_dir=str(tmp_path / "cache")))
    with GeneratorClient(settings, threads=1) as client:
        dropped = client.request_chart(small_chart())
        kept = client.request_chart(small_chart())
        client.cancel(dropped)
        assert client.pending == (kept,)
        answer, seen = wait_answer(client, kept)
        assert isinstance(answer, Failed)
        assert all(getattr(e, "request_id", None) != dropped for e in seen)
