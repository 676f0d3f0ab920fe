"""Import time of a 1,000-tune iReal Pro playlist, against reading the same charts as YAML.

The playlist is built from the real playlists beside the clone (../shared/data/ireal, or
MELODYFLOW_IREAL): their songs, scrambled again into one irealb:// link of --tunes songs
(the playlists are repeated when they hold fewer), written to a temp file. Timed in one
process, best of --repeat runs each:

  import    read the file, unscramble, unroll every tune, write its YAML, parse that
            YAML into a Chart (what `melodyflow check playlist.txt` does)
  baseline  parse the YAML texts of the same tunes into Charts (what `melodyflow check`
            does for charts already imported)

The target is an import of 1,000 tunes in 10 s or less here.

    python3 -m bench.ireal_import [--tunes 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from melodyflowd.music.chart import parse_chart
from melodyflowd.music.ireal import MARKER, _unscramble, find_links, parse_link
from melodyflowd.music.sources import read_tunes
from melodyflowd.music.theory import parse_chord

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("MELODYFLOW_IREAL", ROOT.parent / "shared" / "data" / "ireal"))
SOURCES = ("pop400.txt", "country.txt", "brendan.html", "playlist.html")


def build_playlist(count: int) -> str:
    songs = []
    for name in SOURCES:
        for link in find_links((FIXTURES / name).read_text(encoding="utf-8")):
            songs.extend(parse_link(link))
    if not songs:
        raise SystemExit(f"no songs found in {FIXTURES}")
    chosen = [songs[k % len(songs)] for k in range(count)]
    fields = []
    for k, song in enumerate(chosen):
        title = song.title if k < len(songs) else f"{song.title} ({k // len(songs) + 1})"
        fields.append("=".join([title, song.composer, "", song.style, song.key, "",
                                MARKER + _unscramble(song.music), song.accompaniment,
                                str(int(song.tempo or 0)), "1"]))
    return "irealb://" + urllib.parse.quote("===".join(fields + ["Bench"]), safe="")


def run_import(path: str) -> tuple[int, int, list[str]]:
    tunes = read_tunes(path)
    good, texts = 0, []
    for tune in tunes:
        if tune.error is not None:
            continue
        text = tune.chart_text()
        parse_chart(text, tune.title)
        texts.append(text)
        good += 1
    return len(tunes), good, texts


def run_baseline(texts: list[str]) -> None:
    for text in texts:
        parse_chart(text, "bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tunes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (FIXTURES / "pop400.txt").exists():
        print(f"fixtures not found at {FIXTURES} (set MELODYFLOW_IREAL)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "playlist.txt"
        path.write_text(build_playlist(args.tunes) + "\n", encoding="utf-8")
        size = path.stat().st_size
        import_times, base_times = [], []
        texts: list[str] = []
        total = good = 0
        for _ in range(args.repeat):
            parse_chord.cache_clear()          # each run reads its chord symbols afresh
            start = time.perf_counter()
            total, good, texts = run_import(str(path))
            import_times.append(time.perf_counter() - start)
            parse_chord.cache_clear()
            start = time.perf_counter()
            run_baseline(texts)
            base_times.append(time.perf_counter() - start)
    best_import, best_base = min(import_times), min(base_times)
    bars = sum(text.count("\n    | ") for text in texts)
    print(f"playlist: {total} tunes, {size / 1e6:.1f} MB link, {bars} bars unrolled; "
          f"{good} imported and checked ({100.0 * good / total:.2f} %)")
    print(f"import (unscramble, unroll, YAML, parse): best {best_import:.2f} s of "
          f"{args.repeat} ({1000 * best_import / total:.2f} ms a tune)")
    print(f"baseline (parse the same YAML charts):    best {best_base:.2f} s "
          f"({1000 * best_base / total:.2f} ms a tune)")
    print(f"ratio import / baseline: {best_import / best_base:.2f}x; target: "
          f"{args.tunes} tunes in <= 10 s: {'met' if best_import <= 10 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
