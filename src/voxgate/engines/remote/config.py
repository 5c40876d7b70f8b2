"""Operator configuration of upstreams: `--upstream NAME=KIND+URL[?params]` and `VOXGATE_UPSTREAMS` (JSON).

Only the operator names upstreams (flags, environment); nothing a client sends reaches this module.

A spec string is `NAME=KIND+URL`, e.g. `gpu=openai+http://gpu-box:8880/v1?key=sk-1&timeout=20&model=tts-1`.
The URL's query parameters that the framework reads (RESERVED) configure the upstream; every other
parameter is a kind-specific option (`UpstreamConfig.options`), and none stays in the URL. The JSON form
(`VOXGATE_UPSTREAMS`) is a list whose items are such strings or objects
`{"name": …, "kind": …, "url": …, "api_key": …, "timeout": …, "options": {…}}` (any reserved name as a
key; option values that are not strings are kept as JSON text).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from voxgate.engines.remote.base import KINDS, UpstreamConfig

# The local engines' names: a voice id `NAME:voice` must never look like one of theirs (hibari:heart, kokoro:…).
LOCAL_ENGINES = ("piper", "hibari", "kokoro", "pico", "espeak", "upstream")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
# URL schemes each kind speaks; a kind not listed speaks HTTP.
SCHEMES: Mapping[str, tuple[str, ...]] = {
    "wyoming": ("tcp",),
    "cosyvoice": ("http", "https", "ws", "wss"),
}
HTTP_SCHEMES = ("http", "https")

# Query parameters the framework reads: name → (UpstreamConfig field, type, low, high).
RESERVED: Mapping[str, tuple[str, type, float, float]] = {
    "key": ("api_key", str, 0, 0),
    "timeout": ("timeout", float, 0.1, 3600.0),
    "connect_timeout": ("connect_timeout", float, 0.1, 600.0),
    "concurrency": ("concurrency", int, 1, 256),
    "retries": ("retries", int, 0, 5),
    "breaker": ("breaker_failures", int, 1, 1000),
    "cooldown": ("breaker_cooldown", float, 0.1, 3600.0),
    "fallback": ("fallback", bool, 0, 0),
}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
KEY_ENV = "key_env"  # the API key is read from this environment variable (keeps it out of `ps`)


class UpstreamConfigError(ValueError):
    """An --upstream / VOXGATE_UPSTREAMS entry that cannot be used; the message is one line for the CLI."""


def _number(name: str, text: object, kind: type, low: float, high: float, label: str) -> int | float:
    try:
        value = kind(text) if not isinstance(text, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not (low <= value <= high) or value != value:  # NaN is no number
        what = "a whole number" if kind is int else "a number of seconds"
        raise UpstreamConfigError(f"upstream {label}: {name} must be {what} from {low:g} to {high:g} "
                                  f"(got {text!r})")
    return value


def _option_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _build(name: str, kind: str, url: str, fields: Mapping[str, object],
           options: Mapping[str, object]) -> UpstreamConfig:
    label = repr(name) if name else "(no name)"
    if not _NAME.match(name or ""):
        raise UpstreamConfigError(f"upstream {label}: a name is 1–32 letters, digits, '_', '.' or '-', starting "
                                  "with a letter or digit (NAME=KIND+URL)")
    if name.lower() in LOCAL_ENGINES:
        raise UpstreamConfigError(f"upstream {label}: the name is a local engine's; its voice ids would clash "
                                  f"(names not allowed: {', '.join(LOCAL_ENGINES)})")
    if kind not in KINDS:
        raise UpstreamConfigError(f"upstream {label}: unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    parts = urlsplit(url)
    schemes = SCHEMES.get(kind, HTTP_SCHEMES)
    if parts.scheme.lower() not in schemes:
        raise UpstreamConfigError(f"upstream {label}: a {kind} URL starts with "
                                  f"{' or '.join(s + '://' for s in schemes)} (got {parts.scheme or 'no'} scheme)")
    try:
        port = parts.port
    except ValueError:
        raise UpstreamConfigError(f"upstream {label}: the URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise UpstreamConfigError(f"upstream {label}: the URL has no host")
    if parts.scheme.lower() == "tcp" and port is None:
        raise UpstreamConfigError(f"upstream {label}: a tcp:// URL needs a port (e.g. tcp://host:10200)")
    if parts.username or parts.password:
        raise UpstreamConfigError(f"upstream {label}: give the API key as ?key= or key_env=, not in the URL")
    values: dict[str, Any] = {}
    for param, value in fields.items():
        if param == KEY_ENV:
            secret = os.environ.get(str(value))
            if not secret:
                raise UpstreamConfigError(f"upstream {label}: environment variable {value!r} (key_env) is not set")
            values["api_key"] = secret
            continue
        field, typ, low, high = RESERVED[param]
        if typ is bool:
            flag = value if isinstance(value, bool) else _BOOLS.get(str(value).strip().lower())
            if flag is None:
                raise UpstreamConfigError(f"upstream {label}: {param} must be 1 or 0 (got {value!r})")
            values[field] = flag
        else:
            values[field] = str(value) if typ is str else _number(param, value, typ, low, high, label)
    clean = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))
    config = UpstreamConfig(name=name, kind=kind, url=clean,
                            options={str(k): _option_text(v) for k, v in options.items()})
    return replace(config, **values)


def _split(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL without its query; the query's reserved parameters; its other parameters (options)."""
    parts = urlsplit(url.strip())
    fields: dict[str, str] = {}
    options: dict[str, str] = {}
    for param, value in parse_qsl(parts.query, keep_blank_values=True):
        if param in RESERVED or param == KEY_ENV:
            fields[param] = value
        else:
            options[param] = value
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), fields, options


def parse_spec(spec: str) -> UpstreamConfig:
    """One `NAME=KIND+URL[?params]` string."""
    name, eq, rest = spec.strip().partition("=")
    kind, plus, url = rest.partition("+")
    if not eq or not plus or not url:
        shown = name.strip() or spec.strip()[:20]
        raise UpstreamConfigError(f"upstream {shown!r}: write NAME=KIND+URL, e.g. "
                                  "box=gptsovits+http://gpu-box:9880 (kinds: " + ", ".join(sorted(KINDS)) + ")")
    base, fields, options = _split(url)
    return _build(name.strip(), kind.strip().lower(), base, fields, options)


_FIELD_PARAM = {field: param for param, (field, *_) in RESERVED.items()}  # api_key → key, breaker_failures → …
_OBJECT_KEYS = {"name", "kind", "url", "options", KEY_ENV, *RESERVED, *_FIELD_PARAM}


def parse_object(item: Mapping[str, Any]) -> UpstreamConfig:
    """One JSON object: name, kind, url (its query parameters count as in a spec string), any reserved
    parameter by its query name or its UpstreamConfig field name (these win over the URL's), options."""
    name = str(item.get("name") or "")
    unknown = sorted(set(item) - _OBJECT_KEYS)
    if unknown:
        raise UpstreamConfigError(f"upstream {name!r}: unknown field {unknown[0]!r}; known: "
                                  f"{', '.join(sorted(_OBJECT_KEYS))}")
    if not isinstance(item.get("url"), str) or not isinstance(item.get("kind"), str):
        raise UpstreamConfigError(f"upstream {name!r}: needs \"kind\" and \"url\" strings")
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise UpstreamConfigError(f"upstream {name!r}: \"options\" must be an object")
    base, fields, url_options = _split(str(item["url"]))
    for key, value in item.items():
        if key in RESERVED or key == KEY_ENV:
            fields[key] = value
        elif key in _FIELD_PARAM:
            fields[_FIELD_PARAM[key]] = value
    return _build(name, str(item["kind"]).strip().lower(), base, fields, {**url_options, **options})


def parse_upstreams(items: Iterable[str | Mapping[str, Any]]) -> list[UpstreamConfig]:
    """Every configured upstream, checked (names unique)."""
    configs: list[UpstreamConfig] = []
    for item in items:
        if isinstance(item, str):
            config = parse_spec(item)
        elif isinstance(item, Mapping):
            config = parse_object(item)
        else:
            raise UpstreamConfigError("an upstream is a NAME=KIND+URL string or a JSON object")
        if any(c.name.lower() == config.name.lower() for c in configs):
            raise UpstreamConfigError(f"upstream {config.name!r} is configured twice")
        configs.append(config)
    return configs


def redacted(config: UpstreamConfig) -> str:
    """`NAME=KIND+URL` for logs and the start-up summary: never the key, never the options' values."""
    return f"{config.name}={config.kind}+{config.url}"


__all__ = ["RESERVED", "UpstreamConfigError", "parse_object", "parse_spec", "parse_upstreams", "redacted"]
