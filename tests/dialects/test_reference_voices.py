"""References used per request against a live server: fast first use (no base voice measured on a request),
English spans on an English base, a bounded persisted cache instead of new voices, and errors that say where
a missing reference was looked for. Real engines throughout (Piper joe and Kokoro as bases)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MEASURE_NOW, Server, decode, rms, start_server, stop_server, wait_for_bases
from tests.speech import RATE, other_speaker
from voxgate.audio.encoders import encode_all

BASES = ("--match-bases", "en_US-joe-medium", "kokoro:jf_alpha",  # two bases keep the measuring short;
         "--default-voice", "en_US-joe-medium")  # the default voice is always a base: joe, not a third
REFERENCE_TEXT = "A clear voice reads these words aloud. It speaks slowly and calmly, so that every sound is heard."
ENGLISH = "Hello there. This is a short test of a brand new reference voice, read in English."
BASES_TIMEOUT = 300.0  # seconds for the background measurement on a loaded 2-core machine
pytestmark = pytest.mark.timeout(900)  # the fixture waits for the background measurement of the bases
SPEAKERS = {"p1": (1.45, 1.12), "p2": (0.75, 0.9), "p3": (1.2, 1.05), "p4": (0.85, 0.95)}


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.split()[1])
    return 0.0


def cache_entries(server: Server) -> list[dict[str, object]]:
    folder = server.data_dir / "cache" / "references"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def listed(server: Server) -> dict[str, list[str]]:
    """Every voice list a client can read."""
    def get(path: str) -> object:
        return httpx.get(f"{server.url}{path}", timeout=10).json()

    return {
        "native": sorted(get("/v1/audio/voices")["voices"]),
        "flash": sorted(get("/audio_roles")["roles"]),
        "cosyvoice": sorted(get("/speakers")),
        "alltalk": sorted(get("/api/voices")["voices"]),
    }


def gsv(server: Server, ref: str, text: str = ENGLISH, **params: str) -> httpx.Response:
    query = {"text": text, "text_lang": "en", "ref_audio_path": ref, "prompt_lang": "en", "media_type": "wav",
             **params}
    return httpx.get(f"{server.url}/tts", params=query, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refvoices")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    srv = start_server(home, *BASES, "--reference-cache-entries", "8", *MEASURE_NOW)  # the fixture waits for them
    try:
        refs = srv.data_dir / "refs"
        refs.mkdir(exist_ok=True)
        for name, (f0, formant) in SPEAKERS.items():
            (refs / f"{name}.wav").write_bytes(encode_all(other_speaker(REFERENCE_TEXT, f0, formant), RATE, "wav"))
        wait_for_bases(srv, BASES_TIMEOUT)
        yield srv
    finally:
        stop_server(srv)  # also when the wait failed: never leave the process behind


def test_first_request_with_a_new_reference_costs_no_base_measurement(server: Server) -> None:
    log_before = server.log.read_text()
    started = time.monotonic()
    first = gsv(server, "refs/p1.wav")
    first_time = time.monotonic() - started
    assert first.status_code == 200, first.text
    started = time.monotonic()
    again = gsv(server, "refs/p1.wav")  # cached now: the same request costs synthesis only
    synthesis_time = time.monotonic() - started
    assert again.status_code == 200
    for response in (first, again):
        samples, rate = decode(response.content)
        assert rate == 32000 and 2.0 < len(samples) / rate < 12.0 and rms(samples) > 0.02
    assert first_time < synthesis_time + 3.0, (first_time, synthesis_time)
    new_lines = server.log.read_text()[len(log_before):]
    assert "measured base voice" not in new_lines  # never on a request
    print(f"first request with a new reference {first_time:.2f} s; the same request cached {synthesis_time:.2f} s")
    found = re.findall(r"reference [0-9a-f]{12} cached, on (\S+) \(similarity -?[0-9.]+\) in ([0-9.]+) s", new_lines)
    assert len(found) == 1, new_lines
    assert found[0][0] in ("en_US-joe-medium", "kokoro:jf_alpha") and float(found[0][1]) < 3.0


def test_english_in_a_chinese_request_is_read_by_an_english_base(server: Server) -> None:
    # A reference nearest to a Japanese Kokoro style, as AstrBot sends it: prompt_lang=zh, text_lang=zh.
    made = httpx.post(f"{server.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "voice": "kokoro:jf_alpha", "response_format": "wav",
                            "input": "Good morning. Today we will read a short story together, slowly and clearly."})
    assert made.status_code == 200
    samples, rate = decode(made.content)
    assert 3.0 < len(samples) / rate < 10.0
    (server.data_dir / "refs" / "kokoro.wav").write_bytes(made.content)
    piper, kokoro = metric(server, "voxgate_segments_total", engine="piper"), \
        metric(server, "voxgate_segments_total", engine="kokoro")
    response = gsv(server, "refs/kokoro.wav", text_lang="zh", prompt_lang="zh", prompt_text="早上好")
    assert response.status_code == 200, response.text
    spoken, rate = decode(response.content)
    assert rate == 32000 and 2.5 < len(spoken) / rate < 12.0 and rms(spoken) > 0.02
    (entry,) = [e for e in cache_entries(server) if e["transcript"] == "早上好"]
    features = entry["features"]
    assert isinstance(features, dict) and features["base_voice"] == "kokoro:jf_alpha"  # the reference's own base
    assert features["variants"]["en"]["base_voice"] == "en_US-joe-medium"  # ...and its English one
    assert metric(server, "voxgate_segments_total", engine="piper") > piper  # the English was read by Piper joe
    assert metric(server, "voxgate_segments_total", engine="kokoro") == kokoro  # not by the Japanese style
    # all_ja holds the whole text to Japanese: then the Kokoro base reads it.
    strict = gsv(server, "refs/kokoro.wav", text="今日はいい天気ですね。", text_lang="all_ja", prompt_lang="zh")
    assert strict.status_code == 200
    assert metric(server, "voxgate_segments_total", engine="kokoro") > kokoro


def test_references_used_per_request_are_cached_not_listed(server: Server) -> None:
    before, entries = listed(server), len(cache_entries(server))
    hits, misses = metric(server, "voxgate_reference_cache_total", outcome="hit"), \
        metric(server, "voxgate_reference_cache_total", outcome="miss")
    assert gsv(server, "refs/p2.wav").status_code == 200
    p3 = (server.data_dir / "refs" / "p3.wav").read_bytes()
    flash = httpx.post(f"{server.url}/clone_voice", timeout=120, data={"text": ENGLISH, "response_format": "wav"},
                       files={"reference_audio_file": ("p3.wav", p3, "audio/wav")})
    assert flash.status_code == 200, flash.text
    assert listed(server) == before  # no list shows them
    assert len(cache_entries(server)) == entries + 2
    assert metric(server, "voxgate_reference_cache_total", outcome="miss") == misses + 2
    # The same references again, through other dialects: hits, no new entry, no new matching.
    import base64

    openai = httpx.post(f"{server.url}/v1/audio/speech", timeout=120,
                        json={"model": "tts-1", "input": ENGLISH, "response_format": "wav",
                              "voice": base64.b64encode(p3).decode()})
    assert openai.status_code == 200, openai.text
    assert gsv(server, "refs/p2.wav").status_code == 200
    assert metric(server, "voxgate_reference_cache_total", outcome="hit") == hits + 2
    assert metric(server, "voxgate_reference_cache_total", outcome="miss") == misses + 2
    assert len(cache_entries(server)) == entries + 2 and listed(server) == before


def test_registering_makes_a_listed_voice(server: Server) -> None:
    registered = httpx.get(f"{server.url}/set_refer_audio", params={"refer_audio_path": "refs/p4.wav"}, timeout=120)
    assert registered.json() == {"message": "success"}
    voices = listed(server)["flash"]
    assert sum(v.startswith("gsv-") for v in voices) == 1


def test_a_missing_reference_says_where_it_was_looked_for(server: Server) -> None:
    folder = str(server.data_dir.resolve())
    expected = f"reference file not found: refs/nope.wav (looked in {folder})"
    missing = gsv(server, "refs/nope.wav")
    assert missing.status_code == 400 and missing.json() == {"message": "tts failed", "Exception": expected}
    flash = httpx.post(f"{server.url}/clone_voice", timeout=30,
                       data={"text": ENGLISH, "reference_audio": "refs/nope.wav"})
    assert flash.status_code == 400 and flash.json() == {"detail": expected}


def test_restart_keeps_the_cache_and_its_bound_evicts(server: Server, home: Path) -> None:
    kept = {e["created"] for e in cache_entries(server)}
    assert len(kept) >= 4
    stop_server(server)
    again = start_server(home, *BASES, "--reference-cache-entries", "2", "--no-warmup")  # nothing timed here
    try:
        assert again.data_dir == server.data_dir
        progress = wait_for_bases(again, BASES_TIMEOUT)
        assert progress["measured"] == 2
        assert "measured base voice" not in again.log.read_text()  # measurements came from the data folder
        assert {e["created"] for e in cache_entries(again)} == kept  # nothing lost while the bound was not used
        assert gsv(again, "refs/p1.wav").status_code == 200
        assert metric(again, "voxgate_reference_cache_total", outcome="hit") == 1
        assert metric(again, "voxgate_reference_cache_total", outcome="miss") == 0
        new = other_speaker(REFERENCE_TEXT, 1.3, 0.93)
        (again.data_dir / "refs" / "p5.wav").write_bytes(encode_all(new, RATE, "wav"))
        assert gsv(again, "refs/p5.wav").status_code == 200
        entries = cache_entries(again)
        assert len(entries) == 2  # the bound evicted the least recently used
        assert gsv(again, "refs/p1.wav").status_code == 200  # still cached: it was used just before
        assert metric(again, "voxgate_reference_cache_total", outcome="hit") == 2
    finally:
        stop_server(again)
