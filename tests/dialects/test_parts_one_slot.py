"""Scripts and narration are one request of several parts: one admission slot per HTTP request, however many
lines (Flash-TTS /multi_speak, whole and streamed; AllTalk narrator mode, file and streaming), with real audio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import decode, pcm16, rms
from voxgate.app import create_app
from voxgate.core.service import SynthesisService
from voxgate.settings import Settings

VOICE = "en_US-joe-medium"
LINES = ("The first line is spoken by the narrator.", "The second line answers in a higher voice.",
         "And the third line closes the little scene.")
SCRIPT = (f"<role:{VOICE},pitch:low>{LINES[0]}<role:{VOICE},pitch:high>{LINES[1]}"
          f"<role:{VOICE}>{LINES[2]}")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("parts") / "data"
    app = create_app(Settings(data_dir=Path(data), engines=["piper"], default_voice=VOICE, stackflow_port=0,
                              match_bases=[]))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every admission taken (the service's one door for slots)."""
    taken: list[int] = []
    original = SynthesisService.admit

    def counted(self: SynthesisService) -> None:
        original(self)
        taken.append(self.active)

    monkeypatch.setattr(SynthesisService, "admit", counted)
    return taken


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_flash_script_of_three_lines_takes_one_slot(client: TestClient, admits: list[int], stream: bool) -> None:
    response = client.post("/multi_speak", json={"text": SCRIPT, "response_format": "pcm", "stream": stream})
    assert response.status_code == 200, response.text
    samples = pcm16(response.content)
    rate = 24_000  # Flash-TTS's default output rate
    assert len(samples) / rate > 3.5 and rms(samples) > 0.02  # three sentences of real speech (~4.7 s)
    assert admits == [1]


def test_alltalk_narration_takes_one_slot(client: TestClient, admits: list[int]) -> None:
    text = f'*{LINES[0]}* "{LINES[1]}" {LINES[2]}'
    fields = {"text_input": text, "text_filtering": "standard", "character_voice_gen": VOICE,
              "narrator_enabled": "true", "narrator_voice_gen": VOICE, "text_not_inside": "narrator",
              "language": "en", "output_file_name": "parts", "output_file_timestamp": "false"}
    response = client.post("/api/tts-generate", data=fields)
    assert response.status_code == 200, response.text
    audio = client.get(response.json()["output_file_url"])
    samples, rate = decode(audio.content, "wav")
    assert rate == 44_100 and len(samples) / rate > 3.5 and rms(samples) > 0.02
    assert admits == [1]
