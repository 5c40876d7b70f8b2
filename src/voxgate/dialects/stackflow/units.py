"""The TTS units (`melotts`, and the older `tts`): tasks, their text streams, and their output.

A task is what `setup` creates: a work_id (`melotts.1003`), a voice and output settings. Inference text
goes into the task's current `TextStream`; `finish` closes it and the next text opens a new one, so an
utterance's buffer persists across messages as in the original. One runner per task plays the streams in
order: each audio piece becomes an output message (streamed formats), part of one message at the end
(other formats), and/or playback on the server's sink (`sys` formats). `pause` stops the runner pulling
audio, which in turn stops synthesis once the stream's small prefetch is full; `work` resumes it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voxgate.audio.pcm import int16_bytes
from voxgate.core.context import Context
from voxgate.core.textstream import TextStream, open_text_stream
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.stackflow.models import TaskConfig, parse_setup
from voxgate.dialects.stackflow.protocol import (
    ALLOCATION,
    ALREADY_WORKING,
    BASE64_ERROR,
    LINK_FALSE,
    NO_ACTION,
    NO_UNIT,
    NOT_WORKING,
    OK,
    PUSH_FALSE,
    RUN_FAILED,
    TASK_FULL,
    UNIT_JSON_ERROR,
    Code,
    ProtocolError,
    Request,
    reply,
)
from voxgate.dialects.stackflow.sinks import AudioSink, Playback
from voxgate.errors import InputTooLong, Overloaded, VoxgateError

_LOG = logging.getLogger(__name__)
TTS_UNITS = ("melotts", "tts")
MAX_UTTERANCES = 4  # finished utterances a task may have waiting to be spoken
LINKABLE = ("llm", "vlm", "kws")  # upstream unit kinds the original links to; voxgate hosts none of them

Send = Callable[[bytes], Awaitable[None]]


class Task:
    """One set-up TTS task and the runner that speaks its utterances."""

    def __init__(self, ctx: Context, work_id: str, unit: str, config: TaskConfig, sink: AudioSink,
                 send: Send) -> None:
        self.ctx = ctx
        self.work_id = work_id
        self.unit = unit
        self.config = config
        self.inputs = list(config.inputs)
        self.request_id = "0"  # of the most recent inference message: output messages carry it
        self._sink = sink
        self._send = send  # to the connection that set the task up
        self._current: TextStream | None = None  # the utterance text is being fed into
        self._utterances: asyncio.Queue[TextStream | None] = asyncio.Queue(MAX_UTTERANCES)
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._runner = asyncio.create_task(self._run(), name=f"stackflow {work_id}")
        self._closed = False

    @property
    def paused(self) -> bool:
        """True between `pause` and `work`."""
        return not self._resumed.is_set()

    def info(self) -> dict[str, Any]:
        """`taskinfo` data: `inputs` as the current code names it, `inputs_` as the docs do."""
        return {"model": self.config.model, "response_format": self.config.response_format,
                "enoutput": self.config.enoutput, "inputs": list(self.inputs), "inputs_": list(self.inputs)}

    # -- input ------------------------------------------------------------------------------------

    async def push(self, request_id: str, text: str, finish: bool) -> None:
        """Add inference text; `finish` ends the utterance. Raises ProtocolError for the client."""
        self.request_id = request_id
        if not text and not finish:
            return
        if self._current is None:
            if self._utterances.full():
                raise ProtocolError(ALLOCATION, self.work_id)
            if not text:  # finish with nothing buffered: the original answers an empty final output
                self._utterances.put_nowait(None)
                return
            request = SynthesisRequest(text="", voice=self.config.voice, language=self.config.language,
                                       speed=self.config.speed, sample_rate=self.config.audio_rate,
                                       engine_options=dict(self.config.engine_options))
            try:
                self._current = await open_text_stream(self.ctx.service, request)
            except Overloaded:
                raise ProtocolError(ALLOCATION, self.work_id) from None
            except VoxgateError as exc:
                _LOG.warning("stackflow %s: cannot start synthesis: %s", self.work_id, exc.message)
                raise ProtocolError(RUN_FAILED, self.work_id) from None
            if self._closed:
                await self._current.aclose()
                self._current = None
                raise ProtocolError(PUSH_FALSE, self.work_id)
            self._utterances.put_nowait(self._current)
        stream = self._current
        try:
            if text:
                limit = self.ctx.service.limits.max_input_chars
                if not self.config.stream and stream.characters + len(text) > limit:
                    raise InputTooLong(f"one utterance of a whole-file format is limited to {limit} characters")
                stream.feed(text)
        except VoxgateError as exc:
            _LOG.warning("stackflow %s: inference text refused: %s", self.work_id, exc.message)
            self._current = None
            stream.cancel()
            raise ProtocolError(RUN_FAILED, self.work_id) from None
        if finish:
            stream.finish()
            self._current = None

    # -- output -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            stream = await self._utterances.get()
            try:
                await self._speak(stream)
            except Exception as exc:  # the runner must outlive any one utterance
                _LOG.warning("stackflow %s: synthesis failed: %s", self.work_id, exc,
                             exc_info=not isinstance(exc, VoxgateError))
                await self._send(reply(self.request_id, self.work_id, code=RUN_FAILED))
            finally:
                if stream is not None:
                    await stream.aclose()

    async def _speak(self, stream: TextStream | None) -> None:
        config = self.config
        index, whole = 0, bytearray()
        playback: Playback | None = None
        try:
            while stream is not None:
                await self._resumed.wait()  # paused: nothing is pulled, so synthesis stalls too
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                pcm = int16_bytes(chunk.samples)
                if config.play:
                    playback = playback or self._sink.open(self.work_id, chunk.rate)
                    await playback.write(pcm)
                if not config.enoutput:
                    continue
                if config.stream:
                    data = {"index": index, "delta": base64.b64encode(pcm).decode("ascii"), "finish": False}
                    await self._send(reply(self.request_id, self.work_id, config.response_format, data))
                    index += 1
                else:
                    whole += pcm
            await self._resumed.wait()
            if config.enoutput:
                final: Any = ({"index": index, "delta": "", "finish": True} if config.stream
                              else await asyncio.to_thread(_base64, bytes(whole)))
                await self._send(reply(self.request_id, self.work_id, config.response_format, final))
        finally:
            if playback is not None:
                await playback.close()

    # -- control ----------------------------------------------------------------------------------

    def pause(self) -> Code:
        """Stop output (and, through backpressure, synthesis) until `work`."""
        if self.paused:
            return NOT_WORKING
        self._resumed.clear()
        return OK

    def work(self) -> Code:
        """Resume output after `pause`."""
        if not self.paused:
            return ALREADY_WORKING
        self._resumed.set()
        return OK

    async def close(self) -> None:
        """Drop buffered text and queued audio, stop the runner; the task is gone."""
        self._closed = True
        streams = [self._current] if self._current is not None else []
        self._current = None
        while not self._utterances.empty():
            item = self._utterances.get_nowait()
            if item is not None:
                streams.append(item)
        for stream in streams:
            stream.cancel()
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        for stream in streams:
            await stream.aclose()


class Registry:
    """Every task of every TTS unit; work ids come from one counter starting at 1000, never reused."""

    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.tasks: dict[str, Task] = {}
        self._ids = itertools.count(1000)

    def next_id(self) -> int:
        """Take the next work id number (every setup takes one, failed or not, as in the original)."""
        return next(self._ids)

    def get(self, work_id: str) -> Task | None:
        """The task of a work_id, if it is set up."""
        return self.tasks.get(work_id)

    async def remove(self, task: Task) -> None:
        """Forget a task and stop it."""
        if self.tasks.get(task.work_id) is task:
            del self.tasks[task.work_id]
        await task.close()


def decode_inference(request: Request, work_id: str) -> tuple[str, bool]:
    """(text, finish) of an inference message: stream objects carry {delta, index, finish}; base64
    objects are decoded; anything else is the text itself and finishes the utterance."""
    data, obj = request.data, request.object
    finish = True
    if "stream" in obj:
        if not isinstance(data, dict):
            raise ProtocolError(UNIT_JSON_ERROR, work_id)
        data, finish = data.get("delta", ""), data.get("finish") is True  # index is ignored, as in the original
    if data is None or data == "None":
        data = ""
    if not isinstance(data, str):
        raise ProtocolError(UNIT_JSON_ERROR, work_id)
    if "base64" in obj and data:
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError(BASE64_ERROR, work_id) from None
    return data, finish


class TtsUnits:
    """The `melotts` and `tts` units: setup, inference and the task actions."""

    def __init__(self, ctx: Context, registry: Registry, sink: AudioSink) -> None:
        self.ctx = ctx
        self.registry = registry
        self.sink = sink

    def _task(self, request: Request) -> Task:
        task = self.registry.get(request.work_id)
        if task is None or task.unit != request.unit:
            raise ProtocolError(NO_UNIT)
        return task

    async def inference(self, request: Request) -> None:
        """Text for a task; no acknowledgement on success (the output messages are the answer)."""
        task = self.registry.get(request.work_id)
        if task is None or not task.config.user_input:
            raise ProtocolError(PUSH_FALSE)
        text, finish = decode_inference(request, task.work_id)
        await task.push(request.request_id, text, finish)

    async def action(self, request: Request, send: Send, owned: set[str]) -> bytes:
        """Every other unit action; returns the reply."""
        unit, action = request.unit, request.action
        if action == "setup":
            number = self.registry.next_id()
            if len(self.registry.tasks) >= self.registry.max_tasks:
                raise ProtocolError(TASK_FULL, unit)
            config = parse_setup(self.ctx, unit, request.data)
            work_id = f"{unit}.{number}"
            self.registry.tasks[work_id] = Task(self.ctx, work_id, unit, config, self.sink, send)
            owned.add(work_id)
            _LOG.info("stackflow: %s set up (model %s → voice %s, %s)", work_id, config.model, config.voice,
                      config.response_format)
            return reply(request.request_id, work_id)
        if action == "taskinfo" and request.work_id == unit:
            tasks = [w for w, t in self.registry.tasks.items() if t.unit == unit]
            return reply(request.request_id, unit, f"{unit}.tasklist", tasks)
        if action not in ("taskinfo", "link", "unlink", "pause", "work", "exit"):
            raise ProtocolError(NO_ACTION)
        task = self._task(request)
        if action == "taskinfo":
            return reply(request.request_id, task.work_id, f"{unit}.taskinfo", task.info())
        if action == "link":
            # The original links only to llm/vlm/kws units and fails when the upstream is unknown; voxgate
            # runs no such unit, so every link target is unknown.
            raise ProtocolError(LINK_FALSE)
        if action == "unlink":
            target = request.data if isinstance(request.data, str) else ""
            task.inputs = [entry for entry in task.inputs if entry != target]
            return reply(request.request_id, task.work_id)
        if action in ("pause", "work"):
            code = task.pause() if action == "pause" else task.work()
            return reply(request.request_id, task.work_id, code=code)
        owned.discard(task.work_id)
        await self.registry.remove(task)
        return reply(request.request_id, task.work_id)


def _base64(data: bytes) -> str:
    """ASCII base64 of a whole utterance (off the event loop: it may be megabytes)."""
    return base64.b64encode(data).decode("ascii")
