#!/usr/bin/env python3
"""Time the first GPT-SoVITS /tts with a new reference, as AstrBot sends it (text_lang=zh, prompt_lang=zh,
English text), against the same request once the reference is known.

    python bench/first_reference.py SRC_DIR PORT [--wait-bases]

SRC_DIR is the `src` folder of the voxgate to run (e.g. an older checkout, to compare); the server starts
on PORT with a fresh data folder. --wait-bases waits until GET /ready says the base voices are measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

TEXT = "Hello there, this is a test of a new reference voice. It should answer quickly."
REFERENCE_TEXT = "A clear voice reads these words aloud. It speaks slowly and calmly, so that every sound is heard."


def make_reference(src: str, path: str) -> None:
    """A 5 s 'other speaker': the bundled Piper voice moved up in pitch and formants."""
    sys.path.insert(0, src)
    from voxgate.audio.encoders import encode_all
    from voxgate.audio.voiceshift import Shift, apply_shift
    from voxgate.engines.base import EngineParams
    from voxgate.engines.piper import PiperEngine

    engine = PiperEngine()
    voice = engine.load(engine.voices()[0], 1)
    pieces = voice.synthesize(REFERENCE_TEXT, EngineParams(noise_scale=0.0, noise_w_scale=0.0))
    audio = np.concatenate([p.samples for p in pieces])
    audio = (audio / np.abs(audio).max() * 0.8).astype(np.float32)
    with open(path, "wb") as out:
        out.write(encode_all(apply_shift(audio, 22050, Shift(1.4, 1.1, 1.1, (0.0,) * 48)), 22050, "wav"))


def main() -> None:
    src, port, wait = sys.argv[1], int(sys.argv[2]), "--wait-bases" in sys.argv
    data = tempfile.mkdtemp(prefix="voxgate-first-ref-")
    url = f"http://127.0.0.1:{port}"
    with open(f"{data}/err.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "voxgate", "serve", "--port", str(port), "--data-dir", data,
                                   "--stackflow-port", "0"], stdout=subprocess.DEVNULL, stderr=log,
                                  env={**os.environ, "PYTHONPATH": src})
    try:
        for _ in range(3000):
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        if wait:
            started = time.monotonic()
            while not httpx.get(f"{url}/ready", timeout=5).json()["match_bases"]["done"]:
                time.sleep(1)
            print(f"bases measured in the background {time.monotonic() - started:.1f} s after ready")
        os.makedirs(f"{data}/refs", exist_ok=True)
        make_reference(src, f"{data}/refs/new.wav")
        query = {"text": TEXT, "text_lang": "zh", "ref_audio_path": "refs/new.wav", "prompt_lang": "zh",
                 "prompt_text": "你好"}
        started = time.monotonic()
        first = httpx.get(f"{url}/tts", params=query, timeout=900)
        first_time = time.monotonic() - started
        started = time.monotonic()
        again = httpx.get(f"{url}/tts", params=query, timeout=900)
        again_time = time.monotonic() - started
        print(f"status {first.status_code} {again.status_code}; first request with the new reference "
              f"{first_time:.2f} s; same request again {again_time:.2f} s")
        with open(f"{data}/err.log") as log:
            print("".join(line for line in log if any(w in line for w in ("registered", "cached", "measured"))))
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
