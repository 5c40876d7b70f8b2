"""The per-reference lock of VoiceBank.adhoc: one measurement at a time per reference, and no lock kept after."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from voxgate.core.voicebank import VoiceBank


def test_one_reference_at_a_time_and_nothing_left_behind() -> None:
    bank = SimpleNamespace(_adhoc_locks={})
    inside: list[str] = []
    overlaps: list[str] = []

    async def use(sha: str) -> None:
        async with VoiceBank._one_at_a_time(bank, sha):  # type: ignore[arg-type]
            if sha in inside:
                overlaps.append(sha)
            inside.append(sha)
            await asyncio.sleep(0.01)
            inside.remove(sha)

    async def main() -> None:
        await asyncio.gather(*(use(f"sha{i % 3}") for i in range(12)))
        assert overlaps == []  # the same reference is never measured twice at once
        assert bank._adhoc_locks == {}  # a distinct reference no longer leaves a lock for the server's life
        try:
            async with VoiceBank._one_at_a_time(bank, "x"):  # type: ignore[arg-type]
                raise RuntimeError("measurement failed")
        except RuntimeError:
            pass
        assert bank._adhoc_locks == {}

    asyncio.run(main())
