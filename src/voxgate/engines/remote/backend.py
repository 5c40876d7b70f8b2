"""One upstream behind the backend seam: its queue, timeouts, retries and circuit breaker.

`RemoteBackend` has the methods of scheduling.backend's `Backend` that the router calls (`generate`,
`abort`, `close`) and reads a job the way that module defines `SegmentJob` (voice, text, params, deadline,
urgent, post, rate); it cannot import it (engines import no scheduling), so jobs are read by attribute.

Per job:
- it waits for one of the upstream's `concurrency` slots; waiting jobs are served first-segment-first, then
  by deadline (the stream closest to running dry), then in arrival order;
- the circuit breaker may refuse it at once (after `breaker_failures` failures in a row the upstream is
  not asked for `breaker_cooldown` seconds; then one request probes it);
- the kind's audio comes back piece by piece; every wait for the next piece is bounded by the connect
  plus read timeout (first piece) or the read timeout (later ones), whatever the kind does itself;
- a failure before any audio reached the caller is retried (`retries` times, not for the upstream's 4xx
  answers, which mean the request itself is wrong); after audio was sent it is raised;
- the job's post-processing (pitch/tempo beyond what the upstream does, seam trimming) runs off the event
  loop on the segment's whole audio, as it does on a local engine's sentence: with post-processing the
  segment's audio is passed on when it is complete, without it piece by piece as it arrives;
- a job that asks for the client's format (`job.output`, set by the core's passthrough rule) and has no
  post-processing gets the kind's own bytes in that format (`kind.encoded`), as Pieces whose `encoded`
  holds them, when the kind can send it (`kind.encodes`; option `passthrough=0` turns it off); a kind that
  then finds the upstream refuses the format (NotSupported before any audio) is asked for PCM instead;
- a job whose text keeps coming (`job.texts`, a client's text stream forwarded by the core) is one session
  of the kind's `stream_text` (its `stream_encoded` when the job asks for the client's format and the kind can
  send it), when the kind takes streamed text (`stream_text=0` turns it off); it is never
  retried (its text was consumed) and never failed over here (the text stream falls back to segments), and
  while its text source waits for the client the upstream's silence is no timeout;
- closing the iterator, or `abort(job)`, cancels the task, which closes the kind's iterator and so the
  upstream request (an HTTP response or socket closed mid-answer).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxgate.core.types import Piece
from voxgate.engines.remote.base import NotSupported, UpstreamError, UpstreamKind, UpstreamRequest
from voxgate.errors import EngineFailure

_LOG = logging.getLogger("voxgate.upstream")
RETRY_PAUSE = 0.1  # seconds before the first retry; doubles after each


class UpstreamUnavailable(UpstreamError):
    """The circuit breaker refuses requests to this upstream for now."""


class Gate:
    """At most `size` holders at once; waiters are served by (not urgent, deadline, arrival)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held = 0
        self._waiting: list[tuple[tuple[bool, float], int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def queued(self) -> int:
        return sum(1 for *_, future in self._waiting if not future.done())

    async def acquire(self, urgent: bool = False, deadline: float = 0.0) -> None:
        if self.held < self.size and not self.queued:
            self.held += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, ((not urgent, deadline), next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as it was cancelled: pass the slot on
            raise

    def release(self) -> None:
        while self._waiting:
            *_, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot passes to it: `held` stays
                return
        self.held -= 1


class Breaker:
    """Closed → open after `failures` failures in a row → half-open after `cooldown` s (one probe) → closed
    when the probe succeeds, open again when it fails."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self.state = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.opened = 0  # times it opened
        self._probing = False

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        return max(0.0, self.opened_at + self.cooldown - self.clock()) if self.state == "open" else 0.0

    def allow(self) -> bool:
        """Whether a request may go to the upstream now (in half-open state: the one probe)."""
        if self.state == "open" and self.retry_in() <= 0:
            self.state = "half-open"
        if self.state == "half-open":
            if self._probing:
                return False
            self._probing = True
        return self.state != "open"

    def success(self) -> None:
        self.state, self.consecutive, self._probing = "closed", 0, False

    def failure(self) -> bool:
        """Count a failure; True when this one opened the breaker."""
        self.consecutive += 1
        if self.state == "half-open" or (self.state == "closed" and self.consecutive >= self.failures):
            self.state, self.opened_at, self._probing = "open", self.clock(), False
            self.opened += 1
            return True
        return False

    def abandoned(self) -> None:
        """The request let through ended with neither success nor failure (cancelled, or the caller's
        error): in half-open state the next request probes instead."""
        self._probing = False


@dataclass
class Stats:
    """Counters since start; `first_audio_*` over successful requests."""

    requests: int = 0  # attempts sent to the upstream
    succeeded: int = 0
    failed: int = 0  # attempts that failed (the upstream's fault: refused, timed out, 5xx, bad audio)
    rejected: int = 0  # attempts the upstream answered 4xx (the request's fault; not counted by the breaker)
    refused: int = 0  # jobs the open breaker refused without asking the upstream
    retried: int = 0
    cancelled: int = 0  # jobs closed by their caller before the end
    active: int = 0  # attempts in flight now
    first_audio_sum: float = 0.0  # seconds from sending to the first audio
    first_audio_count: int = 0
    last_first_audio: float | None = None
    last_error: str | None = None
    last_contact_ok: bool | None = None  # the last request or voice listing succeeded (None: none yet)


def upstream_fault(exc: UpstreamError) -> bool:
    """A failure of the upstream (counted by the breaker, retried) rather than of the request. A kind that
    cannot do what was asked (NotSupported: a format it will not pass, a clone call it lacks) is not one."""
    if isinstance(exc, NotSupported):
        return False
    return exc.status is None or exc.status >= 500 or exc.status == 429


_DONE = object()


class _Run:
    """The audio of one job on an upstream: a task fills a queue, the caller reads it."""

    def __init__(self, backend: RemoteBackend, job: Any) -> None:
        self._backend, self._job = backend, job
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._ended = False
        self._task = asyncio.get_running_loop().create_task(self._produce())

    async def _produce(self) -> None:
        try:
            await self._backend.run(self._job, self._queue.put_nowait)
        except asyncio.CancelledError:
            self._queue.put_nowait(_DONE)
            raise
        except UpstreamError as exc:
            self._queue.put_nowait(exc)
        except Exception as exc:  # a kind's bug must still end the stream with an error, never hang it
            _LOG.exception("upstream %s: unexpected error", self._backend.name)
            self._queue.put_nowait(UpstreamError(f"unexpected error: {exc}", upstream=self._backend.name))
        finally:
            self._backend.forget(self._job)
        self._queue.put_nowait(_DONE)

    def __aiter__(self) -> _Run:
        return self

    async def __anext__(self) -> Piece:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _DONE:
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, UpstreamError):
            self._ended = True
            raise EngineFailure(f"upstream {self._backend.name}: {item}") from item
        assert isinstance(item, Piece)
        self._job.rate = item.rate
        return item

    def cancel(self) -> None:
        self._backend.forget(self._job)
        if not self._task.done():
            self._task.cancel()
            self._backend.stats.cancelled += 1
            _LOG.info("upstream %s: request closed before its end (its client left or was stopped)",
                      self._backend.name)
        self._queue.put_nowait(_DONE)  # a reader waiting now ends

    async def aclose(self) -> None:
        if not self._ended:
            self._ended = True
            self.cancel()


class RemoteBackend:
    """Runs segment jobs on one upstream (see the module docstring)."""

    def __init__(self, kind: UpstreamKind, on_contact: Callable[[bool], None] | None = None) -> None:
        self.kind = kind
        self.config = kind.config
        self.name = kind.config.name
        self.gate = Gate(kind.config.concurrency)
        self.breaker = Breaker(kind.config.breaker_failures, kind.config.breaker_cooldown)
        self.stats = Stats()
        self.sessions = 0  # forwarded text streams holding a slot now (they hold it while their client types)
        self._on_contact = on_contact
        self._runs: weakref.WeakKeyDictionary[Any, _Run] = weakref.WeakKeyDictionary()
        self._closed = False

    # -- the Backend methods the router calls -----------------------------------------------------------

    def generate(self, job: Any) -> AsyncIterator[Piece]:
        run = _Run(self, job)
        self._runs[job] = run
        return run

    def abort(self, job: Any) -> None:
        run = self._runs.get(job)
        if run is not None:
            run.cancel()

    def encodes(self, fmt: str, rate: int) -> bool:
        """Whether the kind can send audio in the client's format `fmt` at `rate` Hertz as is (its bytes are then
        passed through: SynthesisService.passthrough)."""
        if self.config.options.get("passthrough", "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        encodes = getattr(self.kind, "encodes", None)
        return bool(encodes is not None and getattr(self.kind, "encoded", None) is not None and encodes(fmt, rate))

    def streams_text(self) -> bool:
        """Whether the kind takes text as it arrives, in one session (`stream_text`; `accepts_text()` when the
        kind has it, e.g. a Wyoming server that says it streams)."""
        if self.config.options.get("stream_text", "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        if getattr(self.kind, "stream_text", None) is None:
            return False
        # A session holds one of the upstream's slots for as long as its client sends text: one slot is always
        # left to ordinary requests, so slow typists cannot starve them (those streams go segment by segment).
        if self.sessions >= self.config.concurrency - 1:
            return False
        accepts = getattr(self.kind, "accepts_text", None)
        return bool(accepts()) if accepts is not None else True

    def forget(self, job: Any) -> None:
        """Drop a finished or cancelled job (its run refers to it: the weak map alone would keep it)."""
        self._runs.pop(job, None)

    def close(self) -> None:
        self._closed = True
        for run in list(self._runs.values()):
            run.cancel()

    # -- one job ----------------------------------------------------------------------------------------

    def _contact(self, ok: bool) -> None:
        self.stats.last_contact_ok = ok
        if self._on_contact is not None:
            self._on_contact(ok)

    async def run(self, job: Any, emit: Callable[[Piece], None]) -> None:
        """Speak `job` on the upstream, handing each piece to `emit`; raises UpstreamError."""
        if self._closed:
            raise UpstreamError("the server is shutting down", upstream=self.name)
        data = job.voice.engine_data
        language = job.voice.language if job.voice.language not in ("", "und") else None
        streamed = getattr(job, "texts", None) is not None
        request = UpstreamRequest(text=job.text, voice=str(data["voice"]), speed=float(job.params.speed),
                                  language=language)
        attempt = 0
        while True:
            if not self.breaker.allow():
                self.stats.refused += 1
                raise UpstreamUnavailable(f"not asked: {self.breaker.consecutive} requests in a row failed, so its "
                                          f"circuit breaker is open for {self.breaker.retry_in():.0f} s more "
                                          f"(last error: {self.stats.last_error})", upstream=self.name)
            sent = [False]

            def forward(piece: Piece, sent: list[bool] = sent) -> None:
                sent[0] = True
                emit(piece)

            await self.gate.acquire(bool(job.urgent), float(job.deadline))
            self.stats.requests += 1
            self.stats.active += 1
            self.sessions += streamed
            try:
                await self._attempt(request, job, forward)
            except asyncio.CancelledError:
                self.breaker.abandoned()
                raise
            except UpstreamError as exc:
                error = exc
            else:
                self.breaker.success()
                self.stats.succeeded += 1
                self._contact(True)
                return
            finally:
                self.stats.active -= 1
                self.sessions -= streamed
                self.gate.release()
            error.upstream, error.sent = self.name, error.sent or sent[0]
            if not upstream_fault(error):
                self.stats.rejected += 1
                self.breaker.abandoned()
                _LOG.warning("upstream %s refused a request: %s", self.name, error)
                raise error
            self.stats.failed += 1
            self.stats.last_error = str(error)
            self._contact(False)
            if self.breaker.failure():
                _LOG.warning("upstream %s: circuit breaker opened after %d failures in a row; not asked for "
                             "%g s", self.name, self.breaker.consecutive, self.breaker.cooldown)
            if error.sent or streamed or attempt >= self.config.retries or self.breaker.state == "open":
                _LOG.warning("upstream %s failed%s: %s", self.name,
                             " after sending audio" if error.sent else "", error)
                raise error
            attempt += 1
            self.stats.retried += 1
            _LOG.warning("upstream %s failed before any audio (%s); retry %d of %d", self.name, error, attempt,
                         self.config.retries)
            await asyncio.sleep(RETRY_PAUSE * 2 ** (attempt - 1))

    def _pieces(self, request: UpstreamRequest, job: Any, encoded: bool) -> AsyncIterator[Piece]:
        """The kind's audio: its own bytes in the job's output format (`encoded`), else PCM pieces."""
        output = getattr(job, "output", None)
        texts = getattr(job, "texts", None)
        if texts is not None:
            if encoded and output is not None:  # the session's own bytes (kind.stream_encoded)
                return _wrapped(self.kind.stream_encoded(request, texts, output.format),  # type: ignore[attr-defined]
                                output.rate)
            return self.kind.stream_text(request, texts)  # type: ignore[attr-defined]
        if not encoded or output is None:
            return self.kind.synthesize(request)
        return _wrapped(self.kind.encoded(request, output.format), output.rate)  # type: ignore[attr-defined]

    async def _attempt(self, request: UpstreamRequest, job: Any, emit: Callable[[Piece], None]) -> None:
        output = getattr(job, "output", None)
        texts = getattr(job, "texts", None)
        encoded = (output is not None and job.post is None and self.encodes(output.format, output.rate)
                   and (texts is None or getattr(self.kind, "stream_encoded", None) is not None))
        if encoded:
            try:
                await self._attempt_with(request, job, emit, True)
                return
            except NotSupported as exc:
                if exc.sent or texts is not None:  # a session's text was consumed: it cannot be asked again
                    raise
                _LOG.info("upstream %s cannot send %s (%s); asking for PCM", self.name, output.format, exc)
        await self._attempt_with(request, job, emit, False)

    async def _attempt_with(self, request: UpstreamRequest, job: Any, emit: Callable[[Piece], None],
                            encoded: bool) -> None:
        config = self.config
        started = time.monotonic()
        pieces = self._pieces(request, job, encoded)
        texts = getattr(job, "texts", None)
        held: list[Piece] = []  # with post-processing: the segment's audio, processed when complete
        first = True
        waiting: asyncio.Future[Piece] | None = None  # the kind's next piece, asked for and not come yet
        try:
            while True:
                limit = config.timeout + (config.connect_timeout if first else 0.0)
                if waiting is None:
                    waiting = asyncio.ensure_future(anext(pieces))
                await asyncio.wait({waiting}, timeout=limit)
                if not waiting.done():
                    if getattr(texts, "waiting", False):
                        continue  # the session waits for the client's text: the upstream's silence is no fault
                    raise UpstreamError(f"no audio within {limit:g} s (timeout)", upstream=self.name)
                try:
                    piece = waiting.result()
                except StopAsyncIteration:
                    break
                finally:
                    waiting = None
                if first:
                    first = False
                    seconds = time.monotonic() - started
                    self.stats.first_audio_sum += seconds
                    self.stats.first_audio_count += 1
                    self.stats.last_first_audio = seconds
                if not len(piece.samples) and not piece.encoded:
                    continue
                if job.post is None:
                    emit(piece)
                else:
                    held.append(piece)
        except (OSError, EOFError) as exc:  # a kind that let a socket error through
            raise UpstreamError(f"connection failed: {exc}", upstream=self.name) from exc
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
                await asyncio.wait({waiting})
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()  # closes the upstream request if it is still open
        if held:
            for piece in await asyncio.to_thread(_post_all, held, job.post):
                emit(piece)


async def _wrapped(data: AsyncIterator[bytes], rate: int) -> AsyncIterator[Piece]:
    """A kind's encoded bytes as Pieces (no samples; `rate` is the client's, which they are in)."""
    empty = np.zeros(0, np.float32)
    try:
        async for chunk in data:
            if chunk:
                yield Piece(empty, rate, encoded=bytes(chunk))
    finally:
        aclose = getattr(data, "aclose", None)
        if aclose is not None:
            await aclose()


def _post_all(pieces: list[Piece], post: Callable[[Piece], Piece]) -> list[Piece]:
    """The segment's pieces joined (one per run of equal rates) and post-processed, as a local engine's
    sentence is."""
    out: list[Piece] = []
    run: list[Piece] = []
    for piece in [*pieces, None]:
        if run and (piece is None or piece.rate != run[0].rate):
            out.append(post(Piece(np.concatenate([p.samples for p in run]), run[0].rate)))
            run = []
        if piece is not None:
            run.append(piece)
    return out


__all__ = ["Breaker", "Gate", "RemoteBackend", "Stats", "UpstreamUnavailable", "upstream_fault"]
