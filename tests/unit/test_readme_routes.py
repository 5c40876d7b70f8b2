"""Every `curl` example in README.md names a route the server has (its method and path, OpenAPI or not), and the
side-effect-free GET examples answer 200 with the content type their comment promises.

tests/e2e/test_readme_examples.py runs every ```sh block against a live server (slow, with engines); this is the
fast check that a renamed or removed route cannot leave a README example behind: it builds the app once (no
voice loads) and asks its router, the same table a request meets (compose.py's choosers, static mounts and
every dialect's routes included)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Match

from voxgate import app as composition
from voxgate.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
# curl options that take a value (the value is not the URL)
VALUED = {"-H", "--header", "-o", "--output", "-d", "--data", "--data-binary", "--data-raw", "--data-urlencode",
          "-F", "--form", "-X", "--request", "-T", "--upload-file", "-u", "--user", "-A", "--user-agent",
          "-e", "--referer", "-b", "--cookie", "-c", "--cookie-jar", "-w", "--write-out", "-m", "--max-time"}
BODY = {"-d", "--data", "--data-binary", "--data-raw", "--data-urlencode", "-F", "--form", "-T", "--upload-file"}
# GET examples that change nothing, run against the app: path → what their content type contains
LIVE = {"/health": "application/json", "/ready": "application/json", "/metrics": "text/plain",
        "/v1/models": "application/json", "/v1/audio/voices": "application/json", "/api/ready": "text/plain",
        "/api/currentsettings": "application/json", "/api/voices": "application/json",
        "/api/rvcvoices": "application/json", "/server_info": "application/json",
        "/audio_roles": "application/json", "/speakers": "application/json", "/": "text/html",
        "/web/app.js": "javascript"}


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line of README.md where the command starts
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    comment: str  # what the README says after `#` on its first line

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.method} {self.path}"


def _code_lines() -> Iterator[tuple[int, str]]:
    """The lines inside README.md's fenced blocks, numbered."""
    inside = False
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            yield number, line


def _commands() -> Iterator[tuple[int, str, str]]:
    """Each curl command (from `curl` to where the shell would end it), its line and its first line's comment."""
    lines = list(_code_lines())
    for i, (number, line) in enumerate(lines):
        at = re.search(r"(?:^|[|;&]\s*|^\s+)curl\s", line)
        if at is None:
            continue
        text = line[line.index("curl", at.start()):]
        j = i
        while True:
            try:
                shlex.split(text, comments=True)
                complete = not text.rstrip().endswith("\\")
            except ValueError:  # an open quote: the command goes on
                complete = False
            if complete or j + 1 >= len(lines) or lines[j + 1][0] != lines[j][0] + 1:
                break
            j += 1
            text += "\n" + lines[j][1]
        comment = line.split("#", 1)[1].strip() if "  #" in line else ""
        yield number, text, comment


def _parse(number: int, text: str, comment: str) -> Example:
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:  # up to where the shell ends curl's own words (a pipe, `;`, `&&`, a redirection)
        if word and set(word) <= set("();<>|&"):
            break
        words.append(word)
    assert words[0] == "curl", f"README.md:{number}: {text!r}"
    method, body, get, url = None, False, False, None
    headers: list[tuple[str, str]] = []
    k = 1
    while k < len(words):
        word = words[k]
        if word in VALUED:
            value = words[k + 1]
            if word in ("-X", "--request"):
                method = value
            elif word in ("-H", "--header"):
                name, _, val = value.partition(":")
                headers.append((name.strip(), val.strip()))
            body = body or word in BODY
            k += 2
            continue
        if word == "--get" or (re.fullmatch(r"-[A-Za-z]+", word) and "G" in word):
            get = True
        elif not word.startswith("-"):
            assert url is None, f"README.md:{number}: two URLs in {text!r}"
            url = word
        k += 1
    assert url is not None, f"README.md:{number}: no URL in {text!r}"
    parts = urlsplit(url if "://" in url else f"http://{url}")
    assert parts.port == 8000 and parts.hostname in ("127.0.0.1", "localhost"), f"README.md:{number}: {url}"
    chosen = method or ("GET" if get or not body else "POST")
    return Example(number, chosen, parts.path or "/", parts.query, tuple(headers), comment)


def _also(comment: str) -> list[str]:
    """Paths a comment says also exist ("also /audiocache/<file>", "also GET /alive, GET /")."""
    found = []
    for tail in re.findall(r"also ([^;:(]+)", comment):
        found += [re.sub(r"<[^>]+>", "x", p) for p in re.findall(r"(?:^|\s)(/[\w/.<>-]*)", tail)]
    return found


EXAMPLES = [_parse(*command) for command in _commands()]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("readme-routes") / "data", engines=["piper"],
                        default_voice="en_US-joe-medium", warmup=False, stackflow_port=0, wyoming_port=0,
                        match_bases=[])
    built = composition.create_app(settings)
    with TestClient(built):  # the lifespan runs (no warm-up: ready at once) and closes everything at the end
        yield built


def _routed(app: FastAPI, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def test_the_examples_are_found() -> None:
    assert len(EXAMPLES) >= 60  # the README has about seventy; a broken extraction finds far fewer
    methods = {e.method for e in EXAMPLES}
    assert methods == {"GET", "POST", "PUT", "DELETE"}
    assert any(e.method == "GET" and e.path == "/tts" and not e.query for e in EXAMPLES)  # curl -sG … -d
    assert any(e.method == "POST" and e.path == "/clone" for e in EXAMPLES)  # piped in: { … } | curl … -d @-


def test_every_curl_example_names_a_route_the_server_has(app: FastAPI) -> None:
    assert not _routed(app, "GET", "/no/such/route")  # no catch-all would make the check below empty
    assert not _routed(app, "DELETE", "/health")
    missing = [str(e) for e in EXAMPLES if not _routed(app, e.method, e.path)]
    missing += [f"README.md:{e.line}: also {p}" for e in EXAMPLES for p in _also(e.comment)
                if not _routed(app, "GET", p)]
    assert not missing, "README examples with no such route:\n" + "\n".join(missing)


def test_side_effect_free_get_examples_answer_with_their_content_type(app: FastAPI) -> None:
    chosen = [e for e in EXAMPLES if e.method == "GET" and not e.query and e.path in LIVE]
    assert {e.path for e in chosen} == set(LIVE)  # each is still in the README
    client = TestClient(app)  # the fixture's lifespan is running
    for example in chosen:
        response = client.get(example.path, headers=dict(example.headers))
        assert response.status_code == 200, f"{example}: {response.status_code} {response.text[:200]}"
        kind = response.headers["content-type"]
        assert LIVE[example.path] in kind, f"{example}: {kind}"
        if kind.startswith("application/json"):
            response.json()  # parses
