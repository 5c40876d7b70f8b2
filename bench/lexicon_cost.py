"""Lexicon cost per kB of text: an empty lexicon, then ~20k random entries (prints ms per 1 kB)."""

from __future__ import annotations

import random
import string
import time

from voxgate.text.lexicon import Entry, Lexicon

ROUNDS = 200


def main() -> None:
    """Apply each lexicon ROUNDS times to 1 kB of English and print the mean time."""
    rng = random.Random(1)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(20000)})
    full = Lexicon()
    full.put([Entry(w, None, w[::-1]) for w in words])
    text = ("The quick brown fox jumps over the lazy dog and keeps running far away. " * 14)[:1000]
    for label, lexicon in (("empty", Lexicon()), (f"{len(words)} entries", full)):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            lexicon.apply(text, language="en-US", voice="v", engine="piper", takes_phonemes=True)
        print(f"{label}: {(time.perf_counter() - start) / ROUNDS * 1000:.3f} ms per 1 kB")


if __name__ == "__main__":
    main()
