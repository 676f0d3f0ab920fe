"""The live view without a browser: what the watcher reads from a real engine, the server's
guards (token, Host, Origin) over real HTTP, and the settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from melodyflowd.errors import UserError
from melodyflowd.service.config import load_settings
from melodyflowd.service.view import (
    ViewServer,
    control_message,
    host_allowed,
    origin_allowed,
)
from melodyflowd.service.viewstate import NOTES_EVERY, Watcher, chart_layout
from melodyflowd.settings import ControlMap
from tests.live.test_engine import BAR, BEAT, make_chart, make_engine
from tests.service.test_daemon_e2e import BARS, CHART, NOTES
from tests.support.jack import DAEMON_CMD, write_bank

CONTROLS = {"regenerate": True, "next": True, "previous": True, "panic": True}


def look(watcher: Watcher, engine, now: float) -> dict | None:
    return watcher.look(engine, now, chart=engine.chart, status="playing", bank_age=3.0,
                        bank_source="test", controls=CONTROLS)


def next_note(state: dict) -> dict:
    marked = [n for n in state["ahead"]["notes"] if n["next"]]
    assert len(marked) == 1
    return marked[0]


# --- the watcher on a real engine -------------------------------------------------------------

def test_position_bar_and_chord_follow_the_clock() -> None:
    engine = make_engine()
    watcher = Watcher()
    state = look(watcher, engine, 0.0)
    assert state["position"] is None and state["clock"] == "waiting"
    engine.handle([0xFA], 0.0)                       # Start: the internal clock from beat 0
    engine.handle([0xF8], 0.0)                       # ... on MIDI clock
    seen = []
    t = 0.0
    for tick in range(1, 24 * 4 * 4):                # four bars of MIDI clock at 120 bpm
        t = tick * BEAT / 24
        engine.handle([0xF8], t)
        state = look(watcher, engine, t)
        if state is not None:
            position = state["position"]
            seen.append((position["bar"], position["span"], int(position["beat"])))
            assert state["clock"] == "midi clock"
    # Bar 0 is Dm7 (beats 0-1) G7 (2-3); the others one chord each: every beat once, in order.
    expected = [(0, 0, 0), (0, 0, 1), (0, 1, 2), (0, 1, 3)] + \
        [(bar, 0, beat) for bar in (1, 2, 3) for beat in range(4)]
    assert seen == expected
    assert look(watcher, engine, t) is None          # nothing changed: nothing to send


def test_the_marked_next_note_is_the_one_the_next_key_plays() -> None:
    engine = make_engine()
    watcher = Watcher()
    engine.handle([0xFA], 0.0)
    t = 0.1
    played = []
    state: dict = {}
    # Keys through bar 0 (Dm7 62 65 69, then G7 71 74) and into bar 1, where the line starts
    # again; before each key the view says which note it will be.
    for beat in (0.2, 0.6, 1.1, 1.6, 2.2, 2.6, 3.1, 3.6, 4.2, 4.7):
        t = beat * BEAT
        state = look(watcher, engine, t) or state
        marked = next_note(state)
        out = engine.handle([0x90, 60, 100], t)
        pitch = [m for m in out if m[0] == 0x90][0][1]
        assert marked["pitch"] == pitch, (beat, marked, pitch)
        assert marked["bar"] == 0                    # always in the bar sounding now
        played.append(pitch)
        engine.handle([0x80, 60, 0], t + 0.01)
    assert look(watcher, engine, t + 0.02) is None   # notes alone: not 10 times a second
    state = look(watcher, engine, t + 0.02 + NOTES_EVERY)
    assert state["clock"] == "internal clock"        # Start without clock ticks
    assert state["played"][-1] == played[-1]
    assert state["played_count"] == len(played)


def test_variation_selected_by_cc_shows_and_borrowed_spans_are_marked() -> None:
    engine = make_engine()
    watcher = Watcher()
    engine.handle([0xFA], 0.0)
    state = look(watcher, engine, 0.01)
    assert state["variation"] == 0 and state["variations"] == 2
    engine.handle([0xB0, 21, 127], 0.02)             # next variation, as a controller does it
    state = look(watcher, engine, 0.03)
    assert state["variation"] == 1 and state["selected"] == 1
    # Variation 1 has no G7 notes in bar 0: that span borrows variation 0's (71 74), spread
    # evenly over beats 2-4 and marked borrowed.
    g7 = [n for n in state["ahead"]["notes"] if n["bar"] == 0 and n["beat"] >= 2]
    assert [n["pitch"] for n in g7] == [71, 74] and all(n["borrowed"] for n in g7)
    assert [n["beat"] for n in g7] == [2.0, 3.0]
    dm7 = [n for n in state["ahead"]["notes"] if n["bar"] == 0 and n["beat"] < 2]
    assert [(n["pitch"], n["beat"], n["borrowed"]) for n in dm7] == [(77, 0.5, False)]


def test_rotation_shows_the_variation_played_in_each_chorus() -> None:
    engine = make_engine(rotate_variations=True)
    watcher = Watcher()
    engine.handle([0xFA], 0.0)
    assert look(watcher, engine, 0.01)["variation"] == 0
    state = look(watcher, engine, 4 * BAR + 0.01)    # second time through the form
    assert state["variation"] == 1 and state["selected"] == 0 and state["rotate"]


def test_chart_layout_is_the_lead_sheet() -> None:
    layout = chart_layout(make_chart())
    assert layout["title"] == "ii-V-I" and layout["time"] == [4, 4]
    assert [[c["symbol"] for c in bar["chords"]] for bar in layout["bars"]] == \
        [["Dm7", "G7"], ["Cj7"], ["A7"], ["NC"]]
    assert layout["bars"][0]["chords"][1] == {"symbol": "G7", "start": 2, "beats": 2,
                                              "alternate": None}
    json.dumps(layout)


def test_layout_shows_alternates_and_held_bars() -> None:
    from melodyflowd.music.chart import parse_chart

    layout = chart_layout(parse_chart('chords: "| C7 (Gb7) | _ | F |"\n', "alt.yaml"))
    first, held, last = layout["bars"]
    assert first["chords"][0]["symbol"] == "C7" and first["chords"][0]["alternate"] == "Gb7"
    assert held["empty"] and held["chords"][0]["symbol"] == "C7"
    assert not last["empty"] and last["chords"][0]["alternate"] is None


def test_before_the_first_bank_only_the_status() -> None:
    watcher = Watcher()
    state = watcher.look(None, 0.0, chart=make_chart(), status="starting: generating 3/48",
                         bank_age=0.0, bank_source="", controls=CONTROLS)
    assert state["position"] is None and not any(state["controls"].values())
    assert watcher.look(None, 0.1, chart=make_chart(), status="starting: generating 3/48",
                        bank_age=0.0, bank_source="", controls=CONTROLS) is None


# --- the guards -------------------------------------------------------------------------------

def test_control_messages_are_the_configured_ccs() -> None:
    controls = ControlMap(channel=2)
    assert control_message(controls, "next") == [0xB2, 21, 127]
    assert control_message(controls, "previous") == [0xB2, 22, 127]
    assert control_message(controls, "panic") == [0xB2, 24, 127]
    off = ControlMap(next_variation=None, panic=None)
    assert control_message(off, "next") is None
    assert control_message(off, "panic") == [0xB0, 123, 127]      # All Notes Off instead


def test_host_and_origin_rules() -> None:
    assert host_allowed("127.0.0.1:8765", 8765) and host_allowed("localhost:8765", 8765)
    assert host_allowed("[::1]:8765", 8765) and host_allowed("192.168.1.5:8765", 8765)
    assert not host_allowed("evil.example:8765", 8765)          # DNS rebinding
    assert not host_allowed("127.0.0.1:80", 8765) and not host_allowed(None, 8765)
    assert origin_allowed(None, "127.0.0.1:8765")
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not origin_allowed("http://evil.example", "127.0.0.1:8765")
    assert not origin_allowed("http://localhost:8765", "127.0.0.1:8765")


@pytest.fixture
def server():
    view = ViewServer("127.0.0.1", 0)
    view.start()
    try:
        yield view
    finally:
        view.stop()


def request(server: ViewServer, path: str, action: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    data = json.dumps({"action": action}).encode() if action is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_page_and_actions_with_the_token(server: ViewServer) -> None:
    assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    status, body = request(server, "/")
    assert status == 200 and b"/view.js" in body
    for path in ("/view.js", "/view.css"):
        assert request(server, path)[0] == 200
    status, body = request(server, "/action", "regenerate", {"X-Melodyflowd-Token": server.token})
    assert status == 202 and json.loads(body) == {"queued": "regenerate"}
    status, _ = request(server, "/action", "next", {
        "X-Melodyflowd-Token": server.token, "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 202
    assert server.actions() == ["regenerate", "next"]
    assert server.actions() == []


def test_bad_token_foreign_origin_and_foreign_host_are_refused(server: ViewServer) -> None:
    token = {"X-Melodyflowd-Token": server.token}
    assert request(server, "/action", "panic")[0] == 403                       # no token
    assert request(server, "/action", "panic", {"X-Melodyflowd-Token": "x" + server.token}
                   )[0] == 403
    assert request(server, "/action", "panic", {**token, "Origin": "http://evil.example"}
                   )[0] == 403
    assert request(server, "/action", "panic", {**token, "Sec-Fetch-Site": "cross-site"}
                   )[0] == 403
    assert request(server, "/action", "panic", {**token, "Host": f"evil.example:{server.port}"}
                   )[0] == 403
    assert request(server, "/", headers={"Host": "evil.example"})[0] == 403
    assert request(server, "/events", headers={"Origin": "http://evil.example"})[0] == 403
    assert server.actions() == []                   # nothing refused was queued
    status, body = request(server, "/action", "launch", token)
    assert status == 400 and b"regenerate" in body


def read_event(stream) -> tuple[str, object]:
    """The next server-sent event: (name, data as JSON)."""
    name, data = "", ""
    while True:
        line = stream.readline().decode()
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "\n" and name:
            return name, json.loads(data)


def test_events_stream_the_chart_and_the_latest_state(server: ViewServer) -> None:
    server.set_chart(chart_layout(make_chart()))
    server.publish({"status": "one"})
    server.publish({"status": "two"})              # a page that connects now gets the latest
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/events", timeout=5) as events:
        assert events.headers["Content-Type"] == "text/event-stream"
        name, chart = read_event(events)
        assert name == "chart" and chart["title"] == "ii-V-I"
        assert read_event(events) == ("state", {"status": "two"})
        server.publish({"status": "three"})        # pushed as it comes
        assert read_event(events) == ("state", {"status": "three"})


def test_a_port_in_use_is_one_clear_error(server: ViewServer) -> None:
    other = ViewServer("127.0.0.1", server.port)
    with pytest.raises(UserError, match="already in use"):
        other.start()


# --- settings ---------------------------------------------------------------------------------

def test_view_settings_from_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("view:\n  port: 9000\n")
    assert load_settings(str(path)).view.port == 9000
    assert load_settings().view.port is None and load_settings().view.address == "127.0.0.1"
    path.write_text("view:\n  port: 70000\n")
    with pytest.raises(UserError, match=r"my.yaml:2:9: view.port: 70000 is out of range"):
        load_settings(str(path))
    path.write_text("view:\n  port: 8765\n  address: my.host\n")
    with pytest.raises(UserError, match=r"my.yaml:3:12: view.address: 'my.host' is not "):
        load_settings(str(path))
    path.write_text("view:\n  address: 0.0.0.0\n")
    assert load_settings(str(path)).view.address == "0.0.0.0"


def run_daemon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real daemon on a chart and a saved bank, with no JACK server to reach: it gets
    as far as the view (which starts before the ports) and then stops with status 1 (an
    unreachable JACK server may come up: retry)."""
    chart = tmp_path / "iivi.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", BARS, [NOTES], title="ii-V-I test", tempo=120)
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"nobody-{uuid.uuid4().hex[:8]}",
           "JACK_NO_START_SERVER": "1"}
    return subprocess.run([*DAEMON_CMD, "--chart", str(chart), "--phrases", str(bank),
                           "--backend", "jack", *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)


def test_view_flag_takes_an_optional_port(tmp_path: Path) -> None:
    result = run_daemon(tmp_path, "--view")
    assert result.returncode == (2 if "already in use" in result.stderr else 1), result.stderr
    # 8765 unless something on this machine holds it: then that is the one clear error.
    assert "live view: http://127.0.0.1:8765/?token=" in result.stderr or \
        "view: 127.0.0.1 port 8765 is already in use" in result.stderr, result.stderr
    result = run_daemon(tmp_path, "--view", "0")
    found = re.search(r"live view: http://127\.0\.0\.1:(\d+)/\?token=(\S+)", result.stderr)
    assert found and int(found.group(1)) > 0 and len(found.group(2)) >= 20, result.stderr
    assert "cannot reach the JACK server" in result.stderr
    result = run_daemon(tmp_path)
    assert "live view" not in result.stderr
    result = run_daemon(tmp_path, "--view", "0", "--view-address", "my.host")
    assert result.returncode == 2
    assert "view.address: 'my.host' is not accepted" in result.stderr


def test_a_port_in_use_stops_the_daemon_with_one_line(tmp_path: Path, server) -> None:
    result = run_daemon(tmp_path, "--view", str(server.port))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [f"melodyflowd: error: view: 127.0.0.1 port {server.port} is already in "
                     "use (another melodyflowd?); pick another with --view PORT"]


def test_follow_mode_shows_the_chord_the_hands_hold() -> None:
    from tests.live.test_engine_follow import EXPECTED, II_V_I, chord, follow_engine

    engine = follow_engine()
    watcher = Watcher()
    state = look(watcher, engine, 0.0)
    assert state["following"] is not None          # the default chord before any is held
    voicing = II_V_I["F"][0]
    chord(engine, voicing, 0.1)
    state = look(watcher, engine, 0.2)
    assert state["following"] == EXPECTED["F"][0] == engine.follow_chord.symbol
    # The held chord may lead: the roll keeps the chart's line and rings no note.
    assert not any(n["next"] for n in state["ahead"]["notes"])
