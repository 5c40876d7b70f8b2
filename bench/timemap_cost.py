"""What the word timer's map of a stream's text costs, normalising the text itself or handed open()'s map.

    .venv/bin/python bench/timemap_cost.py [--chars 3700] [--runs 31]

Harvard sentences and a few with numbers, joined to about `--chars` characters, placed by
`WordTimer.source` the way a stream's first segment places its text: once normalising it again (what every
stream did before open() handed its map over; text streams still do), once with the map handed over.
Both CPU time (what the work is) and wall time (what a loaded machine makes of it) are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from voxgate.core.timemap import WordTimer  # noqa: E402
from voxgate.text.normalize import normalize_mapped  # noqa: E402

EXTRA = ["Dr. Smith paid $3.50 for 25 apples on March 3rd.", "The train leaves at 7:45 pm from platform 12."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=3700)
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args()
    lines = [line.strip() for line in (HERE / "data" / "sentences_en.txt").read_text().splitlines() if line.strip()]
    pool = lines + EXTRA
    text, i = "", 0
    while len(text) < args.chars:
        text += (" " if text else "") + pool[i % len(pool)]
        i += 1
    norm = normalize_mapped(text, "en")
    ways = {"normalised again": lambda: WordTimer(text).source("text", text, "en", True),
            "open()'s map": lambda: WordTimer(text).source("text", text, "en", True, norm)}
    for clock in (time.process_time, time.perf_counter):
        for name, place in ways.items():
            runs = []
            for _ in range(args.runs):
                t = clock()
                place()
                runs.append(clock() - t)
            print(f"{len(text)} characters, {'CPU' if clock is time.process_time else 'wall'}: {name:17} "
                  f"median {1000 * statistics.median(runs):.1f} ms, min {1000 * min(runs):.1f} ms", flush=True)


if __name__ == "__main__":
    main()
