"""The generator child process, for real: spawned, with a tiny model built in the test.

One child serves most tests (spawning one costs seconds: torch and transformers load in
it); each test keeps its own cache folder through the request's GenerationSettings.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from melodyflowd.generate import cache
from melodyflowd.generate.worker import (
    BankReady,
    ChildDied,
    Failed,
    GeneratorClient,
    Progress,
)
from melodyflowd.music.chart import load_chart
from melodyflowd.music.phrases import bank_to_json
from melodyflowd.settings import GenerationSettings, Settings

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
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory):
    """A started client on the tiny model, shared by the tests of this module."""
    settings = make_settings(Path("unused.yaml"), tiny_model,
                             tmp_path_factory.mktemp("unused-cache"))
    shared = GeneratorClient(settings, threads=1)
    shared.start()
    yield shared
    shared.stop()
    assert not shared.alive and shared.pid is None


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


def test_bank_comes_back_then_from_cache(client, tiny_model, chart_file, tmp_path):
    generation = make_settings(chart_file, tiny_model, tmp_path / "cache").generation
    first = client.request(str(chart_file), generation)
    answer, seen = wait_answer(client, first)
    assert isinstance(answer, BankReady), answer
    assert not answer.from_cache
    bank = answer.bank
    assert len(bank.bars) == 12 and bank.n_variations == 2 and bank.seed == 11
    assert [c.symbol for bar in bank.bars for c in bar.chords][7:10] == ["A7", "Dm7", "G7"]
    assert all(phrase.notes for var in bank.variations for phrase in var)
    generating = [e for e in seen if isinstance(e, Progress) and e.request_id == first
                  and e.total]
    assert generating and generating[-1].done == generating[-1].total == 12
    assert client.model_ready and client.pending == ()
    child, restarts = client.pid, client.restarts

    second = client.request(str(chart_file), generation)
    events = client.poll()            # answered from the cache: no trip to the child
    assert len(events) == 1 and isinstance(events[0], BankReady)
    assert events[0].request_id == second and events[0].from_cache
    assert bank_to_json(events[0].bank) == bank_to_json(bank)

    # signals meant for the daemon that reach the whole group leave the child alone
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        os.kill(child, signum)
    # the regenerate control: fresh -> a new bank (seed 11 + 1) from the same child
    third = client.request(str(chart_file), generation, fresh=True)
    answer, _ = wait_answer(client, third)
    assert isinstance(answer, BankReady) and not answer.from_cache
    assert answer.bank.seed == 12
    assert bank_to_json(answer.bank)["variations"] != bank_to_json(bank)["variations"]
    assert client.pid == child and client.restarts == restarts
    # ... and it is reproducible: asking for seed 12 finds exactly that bank
    twelve = dataclasses.replace(generation, seed=12)
    client.request(str(chart_file), twelve)
    events = client.poll()
    assert events[0].from_cache and bank_to_json(events[0].bank) == bank_to_json(answer.bank)


def test_unseeded_requests_pick_a_seed_and_a_restart_plays_from_cache(client, tiny_model,
                                                                    chart_file, tmp_path):
    settings = make_settings(chart_file, tiny_model, tmp_path / "cache")
    unseeded = dataclasses.replace(settings.generation, seed=None)
    rid = client.request(str(chart_file), unseeded)
    answer, _ = wait_answer(client, rid)
    assert isinstance(answer, BankReady) and answer.bank.seed is not None
    picked = answer.bank.seed
    fresh = client.request(str(chart_file), unseeded, fresh=True)
    renewed, _ = wait_answer(client, fresh)
    assert isinstance(renewed, BankReady) and renewed.bank.seed != picked
    # "restart": a new client, same inputs, no seed -> the latest bank, at once
    restarted = GeneratorClient(settings, threads=1)
    try:
        restarted.request(str(chart_file), unseeded)
        events = restarted.poll()
        assert [type(e) for e in events] == [BankReady] and events[0].from_cache
        assert events[0].bank.seed == renewed.bank.seed
        assert restarted.pid is None                    # no child was needed
        # and the first bank is still there under its own seed
        restarted.request(str(chart_file), dataclasses.replace(unseeded, seed=picked))
        events = restarted.poll()
        assert events and events[0].from_cache and events[0].bank.seed == picked
    finally:
        restarted.stop()


def test_damaged_cache_file_is_ignored_and_rebuilt(client, tiny_model, chart_file, tmp_path):
    generation = make_settings(chart_file, tiny_model, tmp_path / "cache").generation
    key = cache.cache_key(load_chart(str(chart_file)), generation)
    path = cache.cache_path(generation.cache_dir, key)
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "melodyflow-bank/1", "bars": [')          # cut short
    rid = client.request(str(chart_file), generation)
    answer, _ = wait_answer(client, rid)
    assert isinstance(answer, BankReady) and not answer.from_cache
    rebuilt = cache.load_cached(generation.cache_dir, key)
    assert rebuilt is not None and bank_to_json(rebuilt) == bank_to_json(answer.bank)


def test_child_killed_mid_generation_is_restarted_and_answers(client, tiny_model, tmp_path):
    chart_file = tmp_path / "long.yaml"
    chart_file.write_text(LONG_CHART)
    generation = make_settings(chart_file, tiny_model, tmp_path / "cache").generation
    restarts = client.restarts
    rid = client.request(str(chart_file), generation)
    killed: list[int] = []

    def kill_while_generating(event) -> None:
        if (not killed and isinstance(event, Progress) and event.request_id == rid
                and event.total and event.done < event.total // 2):
            killed.append(client.pid)
            os.kill(client.pid, signal.SIGKILL)

    answer, seen = wait_answer(client, rid, hook=kill_while_generating)
    assert killed, "the child finished before it could be killed mid-generation"
    died = [e for e in seen if isinstance(e, ChildDied)]
    assert len(died) == 1 and died[0].exitcode == -signal.SIGKILL
    assert "SIGKILL" in died[0].message
    assert any(isinstance(e, Progress) and e.message == "restarting generator" for e in seen)
    assert isinstance(answer, BankReady), answer
    assert answer.request_id == rid and not answer.from_cache
    assert len(answer.bank.bars) == 32 and answer.bank.n_variations == 2
    assert client.restarts == restarts + 1 and client.pid != killed[0] and client.alive
    key = cache.cache_key(load_chart(str(chart_file)), generation)
    assert cache.load_cached(generation.cache_dir, key) is not None


def test_a_bad_chart_fails_in_the_parent(client, tmp_path):
    bad_chart = tmp_path / "bad.yaml"
    bad_chart.write_text('tempo: 120\nchords: "| C7 | Xq9 |"\n')
    pid = client.pid
    rid = client.request(str(bad_chart))
    events = client.poll()          # the chart is read in the parent: no trip to the child
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].request_id == rid
    assert "bad.yaml:2" in events[0].message and "Xq9" in events[0].message
    assert "\n" not in events[0].message and client.pid == pid


def small_chart():
    from melodyflowd.music.chart import Bar, Chart, ChordSpan
    from melodyflowd.music.theory import parse_chord

    spans = [ChordSpan(parse_chord(s), 0.0, 4.0) for s in ("C7", "F7", "G7")]
    return Chart("Hand-built", 120.0, (4, 4), None, None,
                 tuple(Bar(i, "A", (span,)) for i, span in enumerate(spans)))


def test_a_model_that_cannot_load_fails_the_request_not_the_child(tmp_path):
    missing_model = tmp_path / "no-such-model"
    settings = Settings(generation=GenerationSettings(model=str(missing_model), seed=1,
                                                      cache_dir=str(tmp_path / "cache")))
    client = GeneratorClient(settings, threads=1)   # not started: the first miss spawns it
    try:
        rid = client.request_chart(small_chart())
        assert client.pid is not None
        answer, seen = wait_answer(client, rid)
        assert isinstance(answer, Failed), answer
        assert str(missing_model) in answer.message and "\n" not in answer.message
        assert any(isinstance(e, Progress) and e.request_id == rid
                   and e.message.startswith("loading model") for e in seen)
        assert client.alive and not client.model_ready and client.pending == ()
        # a cancelled request gets no answer; the next is answered by the same child
        dropped = client.request_chart(small_chart())
        kept = client.request_chart(small_chart())
        client.cancel(dropped)
        assert client.pending == (kept,)
        answer, seen = wait_answer(client, kept)
        assert isinstance(answer, Failed) and answer.request_id == kept
        assert all(getattr(e, "request_id", None) != dropped for e in seen)
        assert client.restarts == 0
    finally:
        client.stop()
        client.stop()                                    # idempotent
    assert not client.alive and client.pid is None


def test_a_stopped_child_is_logged_and_replaced_and_the_request_answered(tiny_model, tmp_path):
    """SIGSTOP on the child mid-generation: its heartbeat stops, the client kills it,
    reports why, starts a new child and the request is answered (the old one never would)."""
    chart_file = tmp_path / "long.yaml"
    chart_file.write_text(LONG_CHART)
    settings = make_settings(chart_file, tiny_model, tmp_path / "cache")
    own = GeneratorClient(settings, threads=1)
    own.start()
    stopped: list[tuple[int, float]] = []
    try:
        rid = own.request(str(chart_file), settings.generation)

        def stop_while_generating(event) -> None:
            if (not stopped and isinstance(event, Progress) and event.request_id == rid
                    and event.total and event.done < event.total // 2):
                stopped.append((own.pid, time.monotonic()))
                os.kill(own.pid, signal.SIGSTOP)

        answer, seen = wait_answer(own, rid, hook=stop_while_generating)
        assert stopped, "the child finished before it could be stopped mid-generation"
        died = [e for e in seen if isinstance(e, ChildDied)]
        assert len(died) == 1 and "did not answer" in died[0].message, died
        assert isinstance(answer, BankReady) and len(answer.bank.bars) == 32
        assert own.pid != stopped[0][0] and own.alive
        assert not Path(f"/proc/{stopped[0][0]}").exists() or \
            "zombie" in Path(f"/proc/{stopped[0][0]}/status").read_text()
    finally:
        own.stop()
