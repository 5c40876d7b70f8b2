"""The page at `/` in a real browser: Debian's chromium, headless, driven through chromedriver by Selenium.

Run alone with `.venv/bin/python -m pytest -q tests/browser` (needs `apt-get install chromium chromium-driver`;
without them these tests skip locally and fail under CI).
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.conftest import Server, decode, rms, start_server, stop_server

pytestmark = pytest.mark.timeout(420)  # a browser, a server and voice registration on a busy 2-core machine

WAIT = 90.0  # seconds: the longest any single step may take (first audio, a registration, an upload)
API_KEY = "web-page-test-key"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--window-size=1280,1600",
)
LONG_TEXT = " ".join(f"This is sentence number {n}, and it keeps the stream going while the page already plays."
                     for n in range(1, 9))
# Records every fetch the page makes (method, path, JSON body, status); `window.__deny` paths answer 404.
SPY = """
window.__calls = [];
window.__deny = window.__deny || [];
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const path = new URL(typeof input === 'string' ? input : input.url, location.href).pathname;
  let body = null;
  if (typeof init.body === 'string') { try { body = JSON.parse(init.body); } catch { body = init.body; } }
  const call = { method: init.method || 'GET', path, body, status: null };
  window.__calls.push(call);
  if (window.__deny.includes(path)) {
    call.status = 404;
    return new Response('{"detail":"Not Found"}', { status: 404 });
  }
  const response = await realFetch(input, init);
  call.status = response.status;
  return response;
};
"""
FETCH_BLOB = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then((r) => r.arrayBuffer()).then((buffer) => {
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  done(btoa(text));
}).catch((error) => done('ERROR ' + error));
"""


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    return found or next((p for p in (f"/usr/bin/{name}", f"/usr/lib/chromium/{name}") if Path(p).exists()), None)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Debian chromium (never a downloaded browser)."""
    chromium, chromedriver = _tool("chromium"), _tool("chromedriver")
    if not chromium or not chromedriver:
        message = ("the browser test needs Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver; .ci/run installs them)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(WAIT)
    browser.set_script_timeout(WAIT)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def web(timed_server: Server) -> Server:
    """Not the default server: these tests add and delete voices, check that joe is the default voice the page
    shows, and the read-along needs joe's words timed (conftest's timed_server, shared with the timestamp tests)."""
    return timed_server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with an API key for the key-prompt tests (each starts from a cleared localStorage); its log
    must never hold the key, over its whole life."""
    server = start_server(tmp_path_factory.mktemp("web-keyed"), "--api-key", API_KEY,
                          "--default-voice", "en_US-joe-medium")
    yield server
    stop_server(server)
    assert API_KEY not in server.log.read_text()


def wait_for(browser: WebDriver, script: str, what: str, *args: Any, timeout: float = WAIT) -> Any:
    """Poll a JavaScript expression until it is truthy; fail with the page's visible messages if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = browser.execute_script(f"return ({script});", *args)
        except JavascriptException:
            value = None
        if value:
            return value
        time.sleep(0.1)
    messages = browser.execute_script(
        "return [...document.querySelectorAll('.status-line, .error, #record-status, #key-message')]"
        ".map((e) => e.id + ': ' + e.textContent).filter((t) => !t.endsWith(': '))"
        ".concat(['key dialog open: ' + document.getElementById('key-dialog').open,"
        " 'voice: ' + document.getElementById('voice').value]);")
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page says {messages}")


def open_page(browser: WebDriver, server: Server, spy: bool = True) -> None:
    """Load `/` and wait until the voice picker is filled."""
    browser.get(f"{server.url}/")
    wait_for(browser, "document.getElementById('voice').options.length > 0 && document.getElementById('voice').value",
             "the voice picker to be filled")
    if spy:
        browser.execute_script(SPY)


def js_errors(browser: WebDriver) -> list[str]:
    """Script errors the page logged (network errors of refused requests are expected, and not counted)."""
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"]


def set_range(browser: WebDriver, element_id: str, value: float) -> None:
    browser.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)


def type_into(element: WebElement, text: str) -> None:
    element.clear()
    element.send_keys(text)


def downloaded(browser: WebDriver, link_id: str) -> tuple[bytes, str]:
    """The bytes behind a download link (a blob: URL) and its file name."""
    link = browser.find_element(By.ID, link_id)
    href = link.get_attribute("href") or ""
    assert href.startswith("blob:"), href
    encoded = browser.execute_async_script(FETCH_BLOB, href)
    assert not encoded.startswith("ERROR"), encoded
    return base64.b64decode(encoded), link.get_attribute("download") or ""


def calls(browser: WebDriver, keep: Callable[[dict[str, Any]], bool] = lambda c: True) -> list[dict[str, Any]]:
    return [c for c in browser.execute_script("return window.__calls;") if keep(c)]


def reference_wav(server: Server, path: Path) -> Path:
    """A WAV of real speech made by the server itself, for uploading as a new voice's reference."""
    speech = {"model": "tts-1", "voice": "alloy", "response_format": "pcm",
              "input": "This is the reference recording for a voice added from the browser, a few seconds long."}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=speech, timeout=WAIT)
    assert response.status_code == 200
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(response.content[: len(response.content) // 2 * 2])
    return path


def test_page_and_assets_are_served(web: Server) -> None:
    # CosyVoice also answers GET / (with "Hello."): a browser, which accepts HTML, gets the page.
    page = httpx.get(f"{web.url}/", headers={"Accept": "text/html,*/*;q=0.8"}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    html = page.text
    for asset, kind in (("app.js", "javascript"), ("api.js", "javascript"), ("player.js", "javascript"),
                        ("script.js", "javascript"), ("status.js", "javascript"), ("voices.js", "javascript"),
                        ("readalong.js", "javascript"),
                        ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
        response = httpx.get(f"{web.url}/web/{asset}", timeout=10)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], (asset, response.headers["content-type"])
        assert response.headers["cache-control"] == "no-cache"
        text = response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace, not a fetch
        assert "http://" not in text and "https://" not in text  # no CDN: everything comes from voxgate
    assert '<script type="module" src="/web/app.js">' in html and 'href="/web/style.css"' in html
    assert "https://" not in html and "http://" not in html  # no CDN: everything comes from voxgate
    icon = httpx.get(f"{web.url}/favicon.ico", timeout=10)
    assert icon.status_code == 308 and icon.headers["location"] == "/web/icon.svg"
    assert httpx.get(f"{web.url}/web/nothing.js", timeout=10).status_code == 404
    assert httpx.get(f"{web.url}/web/..%2f__init__.py", timeout=10).status_code == 404
    assert httpx.get(f"{web.url}/web/%2e%2e/routes.py", timeout=10).status_code == 404


def test_speak_plays_while_streaming_and_downloads(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    assert driver.find_element(By.ID, "voice").get_attribute("value") == "en_US-joe-medium"  # the default voice
    type_into(driver.find_element(By.ID, "text"), LONG_TEXT)
    set_range(driver, "speed", 1.25)
    set_range(driver, "pitch", 3)
    assert driver.find_element(By.ID, "pitch-out").text == "+3 st"
    driver.execute_script(
        "document.getElementById('player').addEventListener('playing', () => { window.__firstPlay = {"
        " downloadReady: document.getElementById('download').hasAttribute('href') }; }, { once: true });")
    driver.find_element(By.ID, "speak-button").click()

    first = wait_for(driver, "window.__firstPlay", "the audio element to start playing")
    assert first["downloadReady"] is False, "playback must start before the whole response has arrived"
    wait_for(driver, "document.getElementById('player').currentTime > 1.0", "one second of audio to play")
    wait_for(driver, "document.getElementById('download').hasAttribute('href')", "the download link")
    assert not driver.find_element(By.ID, "speak-error").is_displayed()
    assert "first audio after" in driver.find_element(By.ID, "speak-status").text

    (call,) = calls(driver, lambda c: c["path"] == "/v1/audio/speech")
    assert call["method"] == "POST" and call["status"] == 200
    body = call["body"]
    assert body["input"] == LONG_TEXT and body["voice"] == "en_US-joe-medium" and body["model"] == "tts-1"
    assert body["response_format"] == "mp3" and body["speed"] == 1.25
    assert body["pitch"] == pytest.approx(2 ** (3 / 12), abs=1e-4)  # semitones on the slider, a ratio on the wire

    data, name = downloaded(driver, "download")
    assert name.startswith("voxgate-") and name.endswith(".mp3")
    assert driver.find_element(By.ID, "download").text.startswith("Download mp3")
    samples, rate = decode(data, "mp3")
    assert rate == 24000
    assert len(samples) / rate > 15.0  # 8 sentences at 1.25×: well over 15 s
    assert rms(samples) > 0.02
    driver.find_element(By.ID, "stop-button").click()
    assert driver.execute_script("return document.getElementById('player').paused;")
    assert js_errors(driver) == []


def test_pcm_streams_through_web_audio(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "text"), "Raw samples, scheduled as they arrive.")
    driver.find_element(By.CSS_SELECTOR, "#format option[value=pcm]").click()
    driver.find_element(By.ID, "speak-button").click()
    wait_for(driver, "document.getElementById('download').hasAttribute('href')", "the pcm download")
    status = wait_for(driver, "document.getElementById('speak-status').textContent.includes('Finished')"
                      " && document.getElementById('speak-status').textContent", "the pcm playback to finish")
    assert "first audio after" in status
    data, name = downloaded(driver, "download")
    assert name.endswith(".pcm")
    samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    assert 1.0 < len(samples) / 24000 < 10.0 and rms(samples) > 0.02
    # Once played, the element holds the same audio as a WAV, to replay and seek.
    replay = driver.execute_script("return document.getElementById('player').src;")
    wav_bytes = base64.b64decode(driver.execute_async_script(FETCH_BLOB, replay))
    with wave.open(io.BytesIO(wav_bytes)) as replayed:
        assert replayed.getframerate() == 24000 and replayed.getnframes() == len(samples)
    assert js_errors(driver) == []


# Records, every 10 ms, which word span is lit (its index) and how far the audio has played at that moment, by
# the audio's own clock: every buffer the page schedules on its AudioContext is noted (when it starts, how long
# it lasts), so the position is the sum of what has sounded, whatever the load does to the page's timers.
LIT_RECORDER = """
window.__lit = [];
window.__parts = [];
const Base = window.AudioContext;
window.AudioContext = class extends Base {
  constructor(...args) { super(...args); window.__audio = this; }
  createBufferSource() {
    const node = super.createBufferSource();
    const start = node.start.bind(node);
    node.start = (at, ...rest) => {
      window.__parts.push([Math.max(at || 0, this.currentTime), node.buffer.duration]);
      return start(at, ...rest);
    };
    return node;
  }
};
const heard = () => {
  const now = window.__audio ? window.__audio.currentTime : 0;
  return window.__parts.reduce((sum, [at, length]) => sum + Math.min(Math.max(now - at, 0), length), 0);
};
let last = null;
setInterval(() => {
  const spans = [...document.querySelectorAll('#read-along .word')];
  const index = spans.findIndex((s) => s.classList.contains('now'));
  if (index !== last) { window.__lit.push([index, heard()]); last = index; }
}, 10);
"""


def test_read_along_lights_each_word_while_it_is_heard(driver: WebDriver, web: Server) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "text"), text)
    driver.find_element(By.CSS_SELECTOR, "#format option[value=pcm]").click()  # Web Audio: a sample clock
    assert driver.find_element(By.ID, "read-along-on").is_selected()  # on by default
    driver.execute_script(LIT_RECORDER)
    driver.find_element(By.ID, "speak-button").click()
    wait_for(driver, "document.getElementById('speak-status').textContent.includes('Finished')",
             "the read-along playback to finish")
    # The panel marks every word heard on its next tick (40 ms) after the playback ends.
    wait_for(driver, "[...document.querySelectorAll('#read-along .word')].every((w) => w.classList.contains('said'))",
             "every word to be marked heard")
    (call,) = calls(driver, lambda c: c["path"] == "/v1/audio/speech")
    assert call["body"]["stream_format"] == "sse" and call["body"]["timestamps"] is True
    words = driver.execute_script("return [...document.querySelectorAll('#read-along .word')]"
                                  ".map((w) => [w.textContent, Number(w.dataset.start), w.className]);")
    assert [w for w, _, _ in words] == text.split()  # the text as typed, one span per word
    assert all("said" in cls and "now" not in cls for _, _, cls in words)  # all heard once it ended
    assert driver.find_element(By.ID, "read-along").text == text
    lit = [(index, at) for index, at in driver.execute_script("return window.__lit;") if index >= 0]
    order = [index for index, _ in lit]
    # In order, each word lit once at most; a heavily loaded page may skip a short word (its timer late), never
    # go back. No wall-clock bound: the page's timers run late under load, the audio does not.
    assert lit and order == sorted(set(order)), order
    total = sum(length for _, length in driver.execute_script("return window.__parts;"))
    for index, at in lit:  # never before the audio reaches the word, never after the audio has ended
        assert words[index][1] - 0.005 <= at <= total + 0.005, (index, at, words[index][1], total)
    assert not driver.find_element(By.ID, "read-along-note").is_displayed()
    assert js_errors(driver) == []


def test_read_along_shows_an_ssml_document_s_words_not_its_markup(driver: WebDriver, web: Server) -> None:
    doc = '<speak>Visit the <sub alias="World Wide Web">WWW</sub>. Then <emphasis>call</emphasis> AT&amp;T.</speak>'
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "text"), doc)
    driver.find_element(By.CSS_SELECTOR, "#format option[value=pcm]").click()
    driver.find_element(By.ID, "speak-button").click()
    wait_for(driver, "document.getElementById('speak-status').textContent.includes('Finished')",
             "the SSML read-along playback to finish")
    words = driver.execute_script("return [...document.querySelectorAll('#read-along .word')]"
                                  ".map((w) => w.textContent);")
    assert words == ["Visit", "the", "WWW.", "Then", "call", "AT&T."]  # offsets into the document, shown as read
    assert driver.find_element(By.ID, "read-along").text == "Visit the WWW. Then call AT&T."
    assert js_errors(driver) == []


def test_add_voice_from_file_and_microphone_then_delete(driver: WebDriver, web: Server, tmp_path: Path) -> None:
    reference = reference_wav(web, tmp_path / "reference.wav")
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "voice-name"), "Browser Voice")
    type_into(driver.find_element(By.ID, "voice-transcript"), "This is the reference recording.")
    driver.find_element(By.ID, "voice-file").send_keys(str(reference))
    driver.find_element(By.ID, "add-voice-button").click()
    wait_for(driver, "document.getElementById('add-status').textContent.startsWith('Added')", "the voice to be added")

    listed = {v["id"]: v for v in httpx.get(f"{web.url}/v1/audio/voices", timeout=10).json()["data"]}
    added = [v for v in listed.values() if v["kind"] == "registered" and v["name"] == "Browser Voice"]
    assert len(added) == 1 and added[0]["transcript"] == "This is the reference recording."
    voice_id = added[0]["id"]
    picker = driver.find_element(By.ID, "voice")
    assert picker.get_attribute("value") == voice_id  # the new voice is picked at once
    options = [o.get_attribute("value") for o in picker.find_elements(By.TAG_NAME, "option")]
    assert set(options) == set(listed)
    row = driver.find_element(By.CSS_SELECTOR, f"#voice-table tr[data-id='{voice_id}']")
    assert "registered" in row.text

    # The search box finds it by name; a language filter hides it, as does a query nothing matches.
    type_into(driver.find_element(By.ID, "voice-search"), "browser")
    assert [o.get_attribute("value") for o in picker.find_elements(By.TAG_NAME, "option")] == [voice_id]
    type_into(driver.find_element(By.ID, "voice-search"), "zz-no-such-voice")
    assert picker.get_attribute("disabled") == "true"
    driver.find_element(By.ID, "voice-search").clear()
    driver.execute_script("document.getElementById('voice-search').dispatchEvent(new Event('input'));")

    # It speaks from the page.
    driver.execute_script(
        "document.getElementById('voice').value = arguments[0];"
        "document.getElementById('voice').dispatchEvent(new Event('change'));", voice_id)
    type_into(driver.find_element(By.ID, "text"), "Now in the voice just added from a file.")
    driver.find_element(By.ID, "speak-button").click()
    wait_for(driver, "document.getElementById('player').currentTime > 0.5", "the new voice to play")
    assert calls(driver, lambda c: c["path"] == "/v1/audio/speech")[-1]["body"]["voice"] == voice_id

    # A microphone take (chromium's fake device) becomes a voice too.
    driver.find_element(By.ID, "record-button").click()
    wait_for(driver, "document.getElementById('record-status').textContent.startsWith('Recording')", "recording")
    time.sleep(2.5)  # a take longer than the server's 1 s minimum
    driver.find_element(By.ID, "record-button").click()
    wait_for(driver, "document.getElementById('record-status').textContent.startsWith('Recorded')",
             "the recording to finish")
    assert driver.find_element(By.ID, "record-preview").is_displayed()
    type_into(driver.find_element(By.ID, "voice-name"), "mic take")
    driver.find_element(By.ID, "voice-transcript").clear()
    driver.find_element(By.ID, "add-voice-button").click()
    wait_for(driver, "document.getElementById('add-status').textContent.startsWith('Added')", "the recorded voice")
    upload = calls(driver, lambda c: c["path"] == "/v1/audio/voices" and c["method"] == "POST")[-1]
    assert upload["status"] == 201
    mic = [v for v in httpx.get(f"{web.url}/v1/audio/voices", timeout=10).json()["data"] if v["name"] == "mic take"]
    assert len(mic) == 1 and mic[0]["duration"] > 1.0

    # Delete asks once more, then removes the voice from the server, the table and the picker.
    for gone in (voice_id, mic[0]["id"]):
        button = driver.find_element(By.CSS_SELECTOR, f"#voice-table tr[data-id='{gone}'] button.danger")
        button.click()
        assert button.text == "Delete?"
        assert httpx.get(f"{web.url}/v1/audio/voices/{gone}", timeout=10).status_code == 200  # not yet
        button.click()
        wait_for(driver, "!document.querySelector(`#voice-table tr[data-id='${arguments[0]}']`)",
                 "the deleted voice's row to go", gone)
        assert httpx.get(f"{web.url}/v1/audio/voices/{gone}", timeout=10).status_code == 404
    options = [o.get_attribute("value") for o in picker.find_elements(By.TAG_NAME, "option")]
    assert voice_id not in options and picker.get_attribute("value") in options
    assert js_errors(driver) == []


def _script_download(driver: WebDriver) -> float:
    """Seconds of (non-silent) audio behind the script's download link."""
    wait_for(driver, "document.getElementById('script-download').hasAttribute('href')", "the script download")
    data, name = downloaded(driver, "script-download")
    assert name.endswith(".mp3")
    samples, rate = decode(data, "mp3")
    assert rate in (16000, 24000) and rms(samples) > 0.02  # /multi_speak keeps Flash-TTS's rate; speech is 24 kHz
    return len(samples) / rate


def test_script_plays_through_multi_speak(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    script = "An opening in the picked voice. <role:en_US-joe-medium,pitch:high>And a higher line after it."
    type_into(driver.find_element(By.ID, "script"), script)
    lines = driver.find_elements(By.CSS_SELECTOR, "#script-lines li")
    assert [li.text for li in lines] == ["(en_US-joe-medium) An opening in the picked voice.",
                                         "en_US-joe-medium And a higher line after it. pitch high"]
    driver.find_element(By.ID, "script-button").click()
    wait_for(driver, "document.getElementById('script-player').currentTime > 1.0", "the script to play")
    assert _script_download(driver) > 3.0
    (call,) = calls(driver, lambda c: c["method"] == "POST")  # one request: the server speaks every line
    assert call["path"] == "/multi_speak" and call["status"] == 200
    assert call["body"] == {"text": f"<role:en_US-joe-medium>{script}", "response_format": "mp3", "stream": True}
    assert js_errors(driver) == []


def test_script_without_multi_speak_speaks_each_line_in_order(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    driver.execute_script("window.__deny.push('/multi_speak');")  # as on a server without the Flash-TTS route
    script = ("<role:en_US-joe-medium>The first speaker says one whole sentence here.\n"
              "<role:echo,pitch:very_low,speed:high>And the second one answers, lower and quicker.")
    type_into(driver.find_element(By.ID, "script"), script)
    driver.find_element(By.ID, "script-button").click()
    wait_for(driver, "document.querySelectorAll('#script-lines li')[1].classList.contains('current')",
             "the second line to be the one heard")
    assert "done" in driver.find_elements(By.CSS_SELECTOR, "#script-lines li")[0].get_attribute("class")
    seconds = _script_download(driver)
    speeches = calls(driver, lambda c: c["path"] == "/v1/audio/speech")
    assert [c["status"] for c in speeches] == [200, 200]
    first, second = (c["body"] for c in speeches)
    assert first["voice"] == "en_US-joe-medium" and first["speed"] == 1 and "pitch" not in first
    assert first["input"] == "The first speaker says one whole sentence here."
    assert second["voice"] == "en_US-joe-medium"  # `echo` is an alias of it: the page sends the voice id
    assert second["speed"] == 1.25 and second["pitch"] == pytest.approx(2 ** (-6 / 12), abs=1e-4)
    assert seconds > 4.0  # both lines, joined
    wait_for(driver, "document.getElementById('script-player').ended", "the script to end")
    wait_for(driver, "[...document.querySelectorAll('#script-lines li')].every((li) => li.classList.contains('done'))",
             "every line to be marked as heard")
    assert js_errors(driver) == []


def test_script_errors_are_shown_before_any_request(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "script"), "Hi. <role:nobody>Who? <role:echo,pitch:loud>Me.")
    driver.find_element(By.ID, "script-button").click()
    error = driver.find_element(By.ID, "script-error")
    assert error.is_displayed()
    assert 'unknown role "nobody"' in error.text and "en_US-joe-medium" in error.text
    assert 'pitch "loud"' in error.text
    assert calls(driver, lambda c: c["method"] == "POST") == []
    bad = [li.get_attribute("class") for li in driver.find_elements(By.CSS_SELECTOR, "#script-lines li")]
    assert bad == ["", "bad", "bad"]


def test_status_panel_reads_health_ready_and_metrics(driver: WebDriver, web: Server) -> None:
    speech = {"model": "tts-1", "voice": "alloy", "input": "Something to measure.", "response_format": "pcm"}
    assert httpx.post(f"{web.url}/v1/audio/speech", json=speech, timeout=WAIT).status_code == 200
    open_page(driver, web)
    driver.find_element(By.ID, "status-refresh").click()
    wait_for(driver, "document.getElementById('status-updated').textContent.startsWith('Updated')", "the status")
    stats = dict(driver.execute_script(
        "return [...document.querySelectorAll('#status-list div')].map((d) => [d.querySelector('dt').textContent,"
        " d.querySelector('dd').textContent]);"))
    assert stats["Health"] == "ok" and stats["Ready"] == "ready" and stats["Default voice"] == "en_US-joe-medium"
    assert stats["Workers"] == "2" and stats["Queue depth"].isdigit() and stats["Jobs running"].isdigit()
    metrics = httpx.get(f"{web.url}/metrics", timeout=10).text
    done = next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith("voxgate_jobs_completed "))
    assert math.isclose(float(stats["Jobs done"]), done)  # nothing else runs on this server meanwhile
    assert stats["First audio p50"].startswith("≤ ") and stats["First audio p50"].endswith(" ms")
    assert driver.find_element(By.ID, "ready-pill").text == "ready"
    engines = driver.find_element(By.ID, "engine-list").text
    assert engines.startswith("piper: ") and "1 loaded" in engines
    assert "openai:" in driver.find_element(By.ID, "dialect-list").text
    assert js_errors(driver) == []


def test_api_key_is_asked_for_once_and_kept(driver: WebDriver, keyed: Server) -> None:
    server = keyed
    try:
        assert httpx.get(f"{server.url}/v1/audio/voices", timeout=10).status_code == 401
        driver.get(f"{server.url}/")  # the page itself loads without a key
        driver.execute_script("localStorage.clear();")
        driver.get(f"{server.url}/")
        wait_for(driver, "document.getElementById('key-dialog').open", "the key dialog")
        type_into(driver.find_element(By.ID, "key-input"), "not-the-key")
        driver.find_element(By.CSS_SELECTOR, "#key-form button[value=save]").click()
        wait_for(driver, "document.getElementById('key-dialog').open"
                 " && document.getElementById('key-message').textContent.includes('refused')", "the refusal")
        type_into(driver.find_element(By.ID, "key-input"), API_KEY)
        driver.find_element(By.CSS_SELECTOR, "#key-form button[value=save]").click()
        wait_for(driver, "document.getElementById('voice').value === 'en_US-joe-medium'", "voices after the key")
        assert driver.execute_script("return localStorage.getItem('voxgate.apiKey');") == API_KEY
        driver.get(f"{server.url}/")  # kept: no second question
        wait_for(driver, "document.getElementById('voice').value", "voices with the kept key")
        assert not driver.execute_script("return document.getElementById('key-dialog').open;")
        driver.execute_script(SPY)
        type_into(driver.find_element(By.ID, "text"), "Spoken with a key.")
        driver.find_element(By.ID, "speak-button").click()
        wait_for(driver, "document.getElementById('player').currentTime > 0.3", "keyed speech to play")
        assert calls(driver, lambda c: c["path"] == "/v1/audio/speech")[0]["status"] == 200
    finally:
        driver.execute_script("localStorage.clear();")
    assert API_KEY not in server.log.read_text()  # so far; the fixture checks the rest of its life



# ---- layout at desktop and phone sizes, voice groups, preview, short errors, the key prompt's Cancel ----------

SIZES = {"desktop": (1280, 760, False), "phone": (390, 844, True)}
IN_VIEW = """
const r = arguments[0].getBoundingClientRect();
return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
"""


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the layout test leaves its screenshots (to look at; never committed): $VOXGATE_SCREENSHOTS or tmp."""
    folder = Path(os.environ.get("VOXGATE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def in_view(browser: WebDriver, element_id: str) -> bool:
    return bool(browser.execute_script(IN_VIEW, browser.find_element(By.ID, element_id)))


@pytest.fixture
def sized(driver: WebDriver, request: pytest.FixtureRequest) -> Iterator[str]:
    """The browser's viewport at exactly one of SIZES (a phone with its touch-style overlay scrollbars)."""
    name = request.param
    width, height, mobile = SIZES[name]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    try:
        yield name
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("sized", list(SIZES), indirect=True)
def test_layout_keeps_feedback_beside_speak_without_sideways_scroll(
        driver: WebDriver, web: Server, sized: str, tmp_path: Path) -> None:
    width, height, _ = SIZES[sized]
    open_page(driver, web)
    # A phone widens its layout viewport to fit a page wider than the screen: that is sideways scrolling too.
    assert driver.execute_script("return [innerWidth, innerHeight];") == [width, height], \
        f"{sized}: the page is wider than the screen"
    overflow = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
    scroll_width, client_width = driver.execute_script(overflow)
    assert scroll_width <= client_width, f"{sized}: the page scrolls sideways ({scroll_width} > {client_width})"
    assert driver.execute_script("return scrollY;") == 0
    assert in_view(driver, "speak-button"), f"{sized}: Speak is below the fold on load"

    # Nothing typed: the error appears where the person is looking.
    driver.find_element(By.ID, "text").clear()
    driver.find_element(By.ID, "speak-button").click()
    assert driver.find_element(By.ID, "speak-error").text == "Type some text first."
    driver.execute_script("window.scrollTo(0, 0);")
    assert in_view(driver, "speak-error"), f"{sized}: the error is out of view"

    type_into(driver.find_element(By.ID, "text"), LONG_TEXT)
    driver.execute_script("window.scrollTo(0, 0);")
    driver.find_element(By.ID, "speak-button").click()
    wait_for(driver, "!document.getElementById('speak-progress').hidden", "the progress bar")
    assert in_view(driver, "speak-progress") and in_view(driver, "speak-status"), f"{sized}: progress out of view"
    wait_for(driver, "document.getElementById('player').currentTime > 0.3", "the audio to play")
    for feedback in ("speak-status", "player", "stop-button"):
        assert in_view(driver, feedback), f"{sized}: {feedback} is out of view while playing"
    assert driver.execute_script(overflow)[0] <= client_width
    driver.save_screenshot(str(screenshot_dir(tmp_path) / f"speak-{sized}.png"))

    # The same holds with the page scrolled down to the middle of the Speak card (the bar sticks).
    driver.execute_script("document.getElementById('voice').scrollIntoView({block: 'center'});")
    assert in_view(driver, "speak-status") and in_view(driver, "player")
    driver.find_element(By.ID, "stop-button").click()

    # The voice list: one group per engine, espeak-ng's folded, no sideways scroll when opened.
    driver.execute_script("document.getElementById('voice-table').scrollIntoView({block: 'start'});")
    groups = driver.execute_script(
        "return [...document.querySelectorAll('#voice-table details')].map((d) => [d.dataset.group, d.open]);")
    assert dict(groups)["espeak"] is False and all(is_open for key, is_open in groups if key != "espeak")
    assert not driver.find_element(By.CSS_SELECTOR, "#voice-table tr[data-id='espeak:de']").is_displayed()
    driver.save_screenshot(str(screenshot_dir(tmp_path) / f"voices-{sized}.png"))
    espeak = driver.find_element(By.CSS_SELECTOR, "#voice-table details[data-group=espeak] summary")
    espeak.click()
    assert driver.find_element(By.CSS_SELECTOR, "#voice-table tr[data-id='espeak:de']").is_displayed()
    assert driver.execute_script(overflow)[0] <= driver.execute_script(overflow)[1]
    espeak.click()
    assert js_errors(driver) == []


def test_voice_groups_follow_the_voices_api(driver: WebDriver, web: Server) -> None:
    listed = httpx.get(f"{web.url}/v1/audio/voices", timeout=10).json()["data"]
    open_page(driver, web)
    shown = driver.execute_script("""
      return [...document.querySelectorAll('#voice-table details')].map((d) => ({
        group: d.dataset.group, summary: d.querySelector('summary').textContent,
        ids: [...d.querySelectorAll('tr[data-id]')].map((r) => r.dataset.id),
        languages: [...d.querySelectorAll('tbody')].map((b) => b.dataset.language)}));""")
    installed = [v for v in listed if v["kind"] != "registered"]
    for group in shown:
        expected = sorted(v["id"] for v in installed if v["engine"] == group["group"])
        assert sorted(group["ids"]) == expected, group["group"]
        languages = sorted({v["language"] for v in installed if v["engine"] == group["group"]})
        assert sorted(group["languages"]) == languages  # one row group per language
        assert f"{len(expected)} voice" in group["summary"] and f"{len(languages)} language" in group["summary"]
    assert sorted(v for g in shown for v in g["ids"]) == sorted(v["id"] for v in installed)
    assert [g["group"] for g in shown][-1] == "espeak"  # the folded group comes last
    labels = [o.get_attribute("label") for o in driver.find_elements(By.CSS_SELECTOR, "#voice optgroup")]
    assert any(label.startswith("espeak-ng (") for label in labels)  # the picker is grouped too


def test_preview_speaks_a_sample_in_that_voice(driver: WebDriver, web: Server) -> None:
    open_page(driver, web)
    driver.find_element(By.CSS_SELECTOR, "#voice-table details[data-group=espeak] summary").click()
    button = driver.find_element(By.CSS_SELECTOR, "#voice-table tr[data-id='espeak:de'] button.preview")
    button.click()
    wait_for(driver, "document.getElementById('preview-player').currentTime > 0.2", "the preview to play")
    (call,) = calls(driver, lambda c: c["path"] == "/v1/audio/speech")
    assert call["status"] == 200 and call["body"] == {
        "model": "tts-1", "voice": "espeak:de", "input": "Hallo, so klinge ich.", "response_format": "mp3"}
    player = driver.execute_script(
        "const a = document.getElementById('preview-player');"
        "return {src: a.src, buffered: a.buffered.length ? a.buffered.end(0) : 0};")
    assert player["src"].startswith("blob:") and player["buffered"] > 0.5  # the sample, streamed in (MSE)
    note = driver.find_element(By.CSS_SELECTOR, "#voice-table tr[data-id='espeak:de'] .preview-note").text
    assert note == "Playing “Hallo, so klinge ich.”"
    wait_for(driver, "document.querySelector(`#voice-table tr[data-id='espeak:de'] button.preview`).textContent"
             " === '▶ Preview'", "the preview to end")
    # A second voice's preview, stopped by a second press of its button.
    joe = driver.find_element(By.CSS_SELECTOR, "#voice-table tr[data-id='en_US-joe-medium'] button.preview")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", joe)  # not under the sticky header
    joe.click()
    assert joe.text == "■ Stop"
    joe.click()
    assert joe.text == "▶ Preview"
    wait_for(driver, "document.getElementById('preview-player').paused", "the preview to stop")
    last = calls(driver, lambda c: c["path"] == "/v1/audio/speech")[-1]
    assert last["body"]["input"] == "Hello! This is how I sound."
    assert js_errors(driver) == []


def test_long_lists_in_errors_are_cut_short(driver: WebDriver, web: Server) -> None:
    ids = sorted(v["id"] for v in httpx.get(f"{web.url}/v1/audio/voices", timeout=10).json()["data"])
    assert len(ids) > 20
    open_page(driver, web)
    type_into(driver.find_element(By.ID, "script"), "<role:nobody>Who is this?")
    driver.find_element(By.ID, "script-button").click()
    error = driver.find_element(By.ID, "script-error").text
    page_ids = driver.execute_script("return [...document.getElementById('voice').options].map((o) => o.value);")
    assert error.endswith(f" and {len(page_ids) - 10} more."), error
    assert error.count(", ") == 9 and len(error) < 400
    # The server names 20 voices for an unknown one; the page shows 10 of them and how many it left out.
    driver.execute_script("const s = document.getElementById('voice'); s.add(new Option('ghost', 'no-such-voice'));"
                          "s.value = 'no-such-voice';")
    type_into(driver.find_element(By.ID, "text"), "Nobody speaks.")
    driver.find_element(By.ID, "speak-button").click()
    shown = wait_for(driver, "document.getElementById('speak-error').textContent", "the server's error")
    assert "no-such-voice" in shown and re.search(r"available: (\S+, ){9}\S+ and \d+ more", shown), shown
    assert shown.endswith("(HTTP 400)") or shown.endswith("(HTTP 404)"), shown


def test_cancel_on_the_key_prompt_stops_asking_until_the_key_button(driver: WebDriver, keyed: Server) -> None:
    server = keyed
    try:
        driver.get(f"{server.url}/")
        driver.execute_script("localStorage.clear();")
        driver.get(f"{server.url}/")
        wait_for(driver, "document.getElementById('key-dialog').open", "the key dialog")
        driver.find_element(By.CSS_SELECTOR, "#key-form button[value=cancel]").click()
        assert not driver.execute_script("return document.getElementById('key-dialog').open;")
        driver.execute_script(SPY)
        deadline = time.monotonic() + 12.0  # more than two status refreshes (every 5 s)
        while time.monotonic() < deadline:
            assert not driver.execute_script("return document.getElementById('key-dialog').open;"), \
                "the key dialog reopened after Cancel"
            time.sleep(0.2)
        refused = calls(driver, lambda c: c["status"] == 401)
        assert len(refused) >= 2, refused  # the refresh did run, and was refused, without asking
        assert driver.find_element(By.ID, "ready-pill").text == "key needed"
        assert "API key" in driver.find_element(By.ID, "status-error").text
        assert "attention" in (driver.find_element(By.ID, "key-button").get_attribute("class") or "")
        # Asked for by the person, the dialog opens; with the key the page works.
        driver.find_element(By.ID, "key-button").click()
        wait_for(driver, "document.getElementById('key-dialog').open", "the key dialog from the button")
        type_into(driver.find_element(By.ID, "key-input"), API_KEY)
        driver.find_element(By.CSS_SELECTOR, "#key-form button[value=save]").click()
        wait_for(driver, "document.getElementById('voice').value === 'en_US-joe-medium'", "voices after the key")
        wait_for(driver, "document.getElementById('ready-pill').textContent === 'ready'", "the ready pill")
        assert "attention" not in (driver.find_element(By.ID, "key-button").get_attribute("class") or "")
    finally:
        driver.execute_script("localStorage.clear();")
