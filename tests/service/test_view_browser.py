"""The live view in a real browser (Debian's chromium, headless) on a real daemon: the page
loads, the lit bar follows MIDI clock sent to the daemon through JACK, the buttons
regenerate, step the variation and end a held note, and a page of another origin cannot
act. Skips where chromium, chromedriver or selenium are missing (`make setup` installs
them)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.support.browser import browser_missing, headless_chromium
from tests.support.jack import ClockSender, DaemonProcess, note_ons, take

pytestmark = [pytest.mark.jack, pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None,
                                 reason=browser_missing() or "")]

CHART = ('title: View test\ntempo: 120\ntime: 4/4\n'
         'chords: "| Dm7 G7 | Cmaj7 | Cm7 F7 | Bbmaj7 |"\n')
CHORDS = [["Dm7", "G7"], ["Cmaj7"], ["Cm7", "F7"], ["Bbmaj7"]]
BPM = 240                                   # a bar a second


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("view-model") / "tiny")


def wait(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


LIT = """const b = document.querySelector('.bar.now');
return b ? [Number(b.dataset.bar), (b.querySelector('.chord.lit') || {}).textContent]
         : null;"""


def test_page_follows_midi_clock_and_its_buttons_act(jack_server, tmp_path, tiny_model):
    chart = tmp_path / "view.yaml"
    chart.write_text(CHART)
    config = tmp_path / "config.yaml"
    config.write_text(f"generation:\n  cache_dir: {tmp_path / 'cache'}\n  variations: 2\n")
    daemon = DaemonProcess(jack_server, tmp_path, [
        "--chart", str(chart), "--model", str(tiny_model), "--seed", "5",
        "--config", str(config), "--view", "0"])
    with take(daemon, ready_timeout=180, settle=None) as run:
        driver = clock = None
        try:
            url = next(re.search(r"live view: (http://\S+)", line).group(1)
                       for line in daemon.lines if "live view: http" in line)
            assert url.startswith("http://127.0.0.1:") and "?token=" in url
            driver = headless_chromium(tmp_path / "profile")
            driver.get(url)
            # The lead sheet: four bars with the chart's chords.
            assert wait(lambda: driver.execute_script(
                "return document.querySelectorAll('.bar').length") == 4, 10)
            sheet = driver.execute_script(
                "return [...document.querySelectorAll('.bar')].map(b => "
                "[...b.querySelectorAll('.chord')].map(c => c.textContent))")
            assert sheet == CHORDS
            assert driver.find_element("id", "title").text == "View test"
            assert driver.find_element("id", "variation").text == "1 / 2"

            # MIDI clock through JACK: in the middle of each chord the page lights that bar and
            # that chord (two bars round the form and into the next time through).
            peer = run.peer
            clock = ClockSender(peer, BPM).start()
            for bar in range(6):
                for half, beat in ((0, 1.0), (1, 3.0)):
                    clock.wait_until_beat(bar * 4 + beat)
                    chords = CHORDS[bar % 4]
                    expected = [bar % 4, chords[half] if len(chords) > 1 else chords[0]]
                    lit = wait(lambda e=expected: driver.execute_script(LIT) == e, 0.5)
                    assert lit, (bar, beat, driver.execute_script(LIT), daemon.log())
            assert driver.find_element("id", "clock").text == "midi clock"

            # A key: what the daemon sent is the last note on the page.
            peer.clear()
            peer.send([0x90, 60, 100])
            assert peer.wait_for(lambda got: note_ons(got), timeout=3), daemon.log()
            pitch = note_ons(peer.messages())[0][1]
            assert wait(lambda: driver.execute_script(
                "const s = document.querySelectorAll('#played span');"
                "return s.length && Number(s[s.length - 1].dataset.pitch)") == pitch, 2)

            # Panic ends the held note (the key is still down): a note-off from the daemon.
            driver.find_element("id", "panic").click()
            assert peer.wait_for(lambda got: [0x80, pitch, 64] in got, timeout=3), \
                (peer.messages(), daemon.log())
            peer.send([0x80, 60, 0])

            # Next variation.
            driver.find_element("id", "next").click()
            assert wait(lambda: driver.find_element("id", "variation").text == "2 / 2", 3), \
                daemon.log()
            driver.find_element("id", "previous").click()
            assert wait(lambda: driver.find_element("id", "variation").text == "1 / 2", 3), \
                daemon.log()
            driver.find_element("id", "next").click()
            assert wait(lambda: driver.find_element("id", "variation").text == "2 / 2", 3), \
                daemon.log()

            # Regenerate: the model writes a new bank, it swaps in at a bar line, the page
            # shows the swap and a young bank.
            swaps = driver.execute_script("return state.bank.swaps")
            mark = len(daemon.lines)
            driver.find_element("id", "regenerate").click()
            assert daemon.wait_log("regenerating (view)", timeout=5, after=mark), daemon.log()
            assert wait(lambda: driver.execute_script("return state.bank.swaps") > swaps, 90,
                        step=0.2), daemon.log()
            assert driver.execute_script("return state.bank.age") < 30
            assert driver.find_element("id", "feedback").text == "regenerate: done"
            if os.environ.get("MELODYFLOW_VIEW_SCREENSHOT"):
                driver.save_screenshot(os.environ["MELODYFLOW_VIEW_SCREENSHOT"])

            # The same page from another origin (localhost is not 127.0.0.1 to a browser) may
            # show the song, but its fetch to 127.0.0.1 is refused, token or not.
            token = url.split("token=")[1]
            driver.get(url.replace("127.0.0.1", "localhost"))
            assert wait(lambda: driver.execute_script(
                "return document.querySelectorAll('.bar').length") == 4, 10)
            mark = len(daemon.lines)
            answer = driver.execute_async_script(f"""
                const done = arguments[arguments.length - 1];
                fetch("{url.split('?')[0]}action", {{method: "POST",
                    headers: {{"Content-Type": "application/json",
                               "X-Melodyflowd-Token": "{token}"}},
                    body: JSON.stringify({{action: "next"}})}})
                  .then(r => done("status " + r.status), e => done("refused: " + e));""")
            assert answer.startswith("refused"), answer
            # And on its own origin, a wrong token is refused with 403.
            answer = driver.execute_async_script("""
                const done = arguments[arguments.length - 1];
                fetch("/action", {method: "POST", headers: {"Content-Type": "application/json",
                      "X-Melodyflowd-Token": "not-the-token"},
                      body: JSON.stringify({action: "next"})})
                  .then(r => done(r.status), e => done(String(e)));""")
            assert answer == 403
            time.sleep(0.3)
            assert not any("view: next" in line for line in daemon.lines[mark:]), daemon.log()
        finally:
            if clock is not None:
                clock.stop(send_stop=True)
            if driver is not None:
                driver.quit()
            shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert run.status == 0, daemon.log()
