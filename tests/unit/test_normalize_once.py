"""A request's text is normalised once: the mapped normalisation for word timings takes the result the speaking
normalisation just made, once (a text sent again is normalised again), and nobody can change the shared map."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from voxgate.text.normalize import normalize, normalize_mapped

module = importlib.import_module("voxgate.text.normalize")


def test_the_mapped_call_after_normalize_takes_its_result_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[object, ...]] = []
    inner = module._normalized

    def counting(*args: object) -> object:
        made.append(args)
        return inner(*args)

    monkeypatch.setattr(module, "_normalized", counting)
    text = "It costs $5 on 3/4/2025, Dr. Smith said."
    spoken = normalize(text, "en")
    mapped = normalize_mapped(text, "en")
    assert mapped.text == spoken and "five dollars" in spoken
    assert len(made) == 1  # taken, not made again
    again = normalize_mapped(text, "en")
    assert len(made) == 2 and again is not mapped and again.text == spoken  # taken once only
    assert np.array_equal(again.starts, mapped.starts) and np.array_equal(again.ends, mapped.ends)
    normalize(text, "en")  # takes what the last call left
    assert len(made) == 2
    normalize_mapped(text, "ja")  # other arguments: made for them
    normalize_mapped(text, "en", spoken=False)
    assert [args[1:] for args in made[2:]] == [("ja", True), ("en", False)]
    with pytest.raises(ValueError, match="read-only"):
        mapped.starts[0] = 1
