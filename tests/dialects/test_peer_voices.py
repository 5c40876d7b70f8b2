"""Names clients of peer servers send: Flash-TTS's built-in roles, Kokoro-FastAPI's and other peers' model
and voice names. Against live servers: the shared one (default tables) and one with explicit tables, so the
assertions hold whichever voice is the default."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server
from voxgate.audio.voiceshift import analyse
from voxgate.core.types import voiced_span
from voxgate.settings import DEFAULT_OPENAI_MODELS

VOICE = "en_US-joe-medium"
HIGH = "kokoro:jf_alpha"  # a voice far above joe in pitch: shows which voice really spoke
FLASH_RATE = 16000
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
ROLES = {"female": HIGH, "male": VOICE}
KOKORO = {"af_heart": HIGH, "af_bella": HIGH, "af_sky": "kokoro:jf_nezumi", "am_adam": VOICE,
          "jf_alpha": HIGH, "jm_kumo": "kokoro:jm_kumo"}


def f0(samples: np.ndarray, rate: int) -> float:
    return analyse(samples, rate).f0_median


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("peers"), "--flash-builtin-roles", json.dumps(ROLES),
                       "--kokoro-voice-aliases", json.dumps(KOKORO))
    yield srv
    stop_server(srv)


def speak(server: Server, name: str, text: str = SENTENCE) -> np.ndarray:
    response = httpx.post(f"{server.url}/speak", json={"text": text, "name": name, "response_format": "wav"},
                          timeout=120)
    assert response.status_code == 200, response.text
    samples, rate = decode(response.content)
    assert rate == FLASH_RATE and len(samples) / rate > 2.0 and rms(samples) > 0.02
    return samples


def speech(server: Server, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "input": SENTENCE, "response_format": "pcm", **body})


# --- Flash-TTS built-in roles ------------------------------------------------------------------------------------

def test_builtin_roles_are_listed_first_in_every_role_list(server: Server) -> None:
    listed = httpx.get(f"{server.url}/audio_roles", timeout=10).json()
    assert set(listed) == {"success", "roles"} and listed["success"] is True
    roles = listed["roles"]
    assert isinstance(roles, list) and all(isinstance(r, str) for r in roles)
    assert roles[:2] == ["female", "male"] and roles.count("female") == 1 and roles.count("male") == 1
    assert VOICE in roles
    assert httpx.get(f"{server.url}/v1/audio_roles", timeout=10).json() == listed
    info = httpx.get(f"{server.url}/server_info", timeout=10).json()
    assert info["success"] is True and info["info"]["roles"] == roles


def test_builtin_roles_speak_with_the_voices_the_setting_maps(mapped: Server) -> None:
    female, male = speak(mapped, "female"), speak(mapped, "male")
    high, joe = speak(mapped, HIGH), speak(mapped, VOICE)
    assert 0.9 < f0(female, FLASH_RATE) / f0(high, FLASH_RATE) < 1.1
    assert 0.9 < f0(male, FLASH_RATE) / f0(joe, FLASH_RATE) < 1.1
    assert f0(female, FLASH_RATE) / f0(male, FLASH_RATE) > 1.3  # two different voices really spoke
    assert 0.8 < len(female) / len(high) < 1.25 and 0.8 < len(male) / len(joe) < 1.25


def test_builtin_roles_in_a_multi_speak_script(mapped: Server) -> None:
    line = "It was a quiet morning in the valley, and the river ran slowly past the mill."
    response = httpx.post(f"{mapped.url}/multi_speak", timeout=120, json={
        "text": f"<role:male>{line}<role:female>{line}", "response_format": "wav"})
    assert response.status_code == 200, response.text
    samples, rate = decode(response.content)
    assert rate == FLASH_RATE and rms(samples) > 0.02
    third = len(samples) // 3
    assert f0(samples[-third:], rate) / f0(samples[:third], rate) > 1.3  # male first, then female


def test_builtin_role_on_the_openai_route_as_flash_clients_send_it(mapped: Server) -> None:
    female = speech(mapped, model="spark", voice="female")
    male = speech(mapped, model="spark", voice="male")
    assert female.status_code == 200 and male.status_code == 200, (female.text, male.text)
    high, low = pcm16(female.content), pcm16(male.content)
    assert len(high) / 24000 > 2.0 and rms(high) > 0.02 and rms(low) > 0.02
    assert f0(high, 24000) / f0(low, 24000) > 1.3


def test_builtin_roles_cannot_be_deleted_or_replaced(server: Server) -> None:
    for name in ("female", "male"):
        response = httpx.post(f"{server.url}/delete_speaker", data={"name": name}, timeout=10)
        assert response.status_code == 400
        assert set(response.json()) == {"detail"}
        detail = response.json()["detail"]
        assert detail.startswith(f'Failed to remove the voice character "{name}": it is a built-in role')
        assert "flash_builtin_roles" in detail
    added = httpx.post(f"{server.url}/add_speaker", data={"name": "male", "audio": "AAAA"}, timeout=10)
    assert added.status_code == 400
    assert added.json()["detail"].startswith('Failed to add the voice character "male": it is a built-in role')
    roles = httpx.get(f"{server.url}/audio_roles", timeout=10).json()["roles"]
    assert roles[:2] == ["female", "male"]
    assert httpx.post(f"{server.url}/speak", timeout=60,
                      json={"text": "Still here.", "name": "female", "response_format": "wav"}).status_code == 200


# --- OpenAI route: peers' model names and Kokoro-FastAPI's voices ------------------------------------------------

def test_openai_sdk_with_kokoro_fastapi_model_and_voice(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60, max_retries=0)
    for voice in ("af_heart", "am_adam", "af_bella+af_sky", "af_bella(2)+am_adam(1)", "jf_alpha+jm_kumo"):
        data = client.audio.speech.create(model="kokoro", voice=voice, input=SENTENCE,
                                          response_format="wav").read()
        samples, rate = decode(data)
        assert rate == 24000, voice
        assert 2.5 < len(samples) / rate < 9.0, voice
        assert rms(samples) > 0.02, voice


def test_kokoro_names_speak_with_the_voices_the_table_maps(mapped: Server) -> None:
    heart, adam = speech(mapped, model="kokoro", voice="af_heart"), speech(mapped, model="kokoro", voice="am_adam")
    high, joe = speech(mapped, voice=HIGH), speech(mapped, voice=VOICE)
    for response in (heart, adam, high, joe):
        assert response.status_code == 200, response.text
    samples = {k: pcm16(r.content) for k, r in (("heart", heart), ("adam", adam), ("high", high), ("joe", joe))}
    pitch = {k: f0(s, 24000) for k, s in samples.items()}
    assert 0.9 < pitch["heart"] / pitch["high"] < 1.1 and 0.9 < pitch["adam"] / pitch["joe"] < 1.1
    assert pitch["heart"] / pitch["adam"] > 1.3
    # a blend of two Kokoro styles is a Kokoro blend; a blend across engines speaks its heaviest voice
    blend = speech(mapped, model="kokoro", voice="af_bella + af_sky")
    assert blend.status_code == 200 and rms(pcm16(blend.content)) > 0.02
    heavy = speech(mapped, model="kokoro", voice="am_adam(3)+af_bella(1)")
    assert 0.9 < f0(pcm16(heavy.content), 24000) / pitch["joe"] < 1.1
    dropped = speech(mapped, model="kokoro", voice="af_heart-am_adam")  # subtraction: the rest speaks
    assert 0.9 < f0(pcm16(dropped.content), 24000) / pitch["high"] < 1.1


def test_kokoro_blend_with_an_unknown_voice_is_a_404_naming_it(mapped: Server) -> None:
    response = speech(mapped, model="kokoro", voice="af_bella+zz_nobody")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "voice_not_found" and error["param"] == "voice" and "zz_nobody" in error["message"]


def test_every_peer_model_name_is_accepted_and_listed(server: Server) -> None:
    ids = [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]]
    assert ids[:len(DEFAULT_OPENAI_MODELS)] == list(DEFAULT_OPENAI_MODELS)
    for model in (*DEFAULT_OPENAI_MODELS, "Kokoro", "TTS-1"):
        response = speech(server, model=model, voice=VOICE, input="Hello there.")
        assert response.status_code == 200, (model, response.text)
        assert rms(pcm16(response.content)) > 0.02, model
    one = httpx.get(f"{server.url}/v1/models/kokoro", timeout=10).json()
    assert one == {"id": "kokoro", "object": "model", "created": one["created"], "owned_by": "voxgate"}


def test_unknown_model_error_lists_accepted_names_truncated(server: Server) -> None:
    response = speech(server, model="whisper-1", voice=VOICE)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    message = error["message"]
    assert "'whisper-1'" in message and "tts-1" in message and "kokoro" in message and "…" in message
    assert DEFAULT_OPENAI_MODELS[-1] not in message and len(message) < 300


# --- Kokoro-FastAPI's voices in its other languages (the default table) ------------------------------------------

# One name per language of Kokoro-82M v1.0 beyond English and Japanese, the voice the default table maps it to,
# and a sentence in that language.
OTHER_LANGUAGES = [
    ("zf_xiaobei", "kokoro-zh:jf_nezumi", "今天天气很好，我们去公园散步吧。"),
    ("zm_yunxi", "kokoro-zh:jm_kumo", "北京是中国的首都。"),
    ("ef_dora", "pico:es-ES", "Hoy hace buen tiempo en la ciudad."),
    ("ff_siwis", "pico:fr-FR", "Il fait beau aujourd'hui dans la ville."),
    ("im_nicola", "pico:it-IT", "Oggi il tempo è bello in città."),
    ("hf_alpha", "espeak:hi+f3", "आज मौसम बहुत अच्छा है।"),
    ("pm_alex", "espeak:pt-br", "Hoje o tempo está bom na cidade."),
]


@pytest.mark.parametrize(("name", "voice", "text"), OTHER_LANGUAGES, ids=[n for n, _, _ in OTHER_LANGUAGES])
def test_kokoro_names_of_other_languages_speak_on_both_routes(server: Server, name: str, voice: str,
                                                              text: str) -> None:
    named = speech(server, model="kokoro", voice=name, input=text)
    direct = speech(server, voice=voice, input=text)
    assert named.status_code == 200 and direct.status_code == 200, (named.text, direct.text)
    said, expected = pcm16(named.content), pcm16(direct.content)
    assert len(said) / 24000 > 0.8 and rms(said) > 0.02
    # The mapped voice spoke: the same sound, first to last (each engine here says a text the same way; Pico's
    # near-silent tail after it, -60 dB, varies from call to call by up to 0.4 s, so whole lengths can differ).
    (s0, s1), (e0, e1) = voiced_span(said, 24000), voiced_span(expected, 24000)
    assert abs((s1 - s0) - (e1 - e0)) <= 0.02 * (e1 - e0), ((s0, s1), (e0, e1))
    captioned = httpx.post(f"{server.url}/dev/captioned_speech", timeout=120, json={
        "model": "kokoro", "input": text, "voice": name, "response_format": "wav", "stream": False})
    assert captioned.status_code == 200, captioned.text
    body = captioned.json()
    samples, rate = decode(base64.b64decode(body["audio"]))
    # the captioned path trims and joins as the whole form does, which may differ a little from the plain route
    assert rate == 24000 and abs(len(samples) - len(expected)) <= 0.1 * len(expected) and rms(samples) > 0.02
    assert body["audio_format"] == "audio/wav" and body["timestamps"]
    assert all(0 <= w["start_time"] <= w["end_time"] <= len(samples) / rate + 0.05 for w in body["timestamps"])
