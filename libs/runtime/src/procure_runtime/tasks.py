"""Stopping a background task without swallowing a cancel of the one that stops it."""

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end. Its own CancelledError stays here; a cancel
    of the caller meanwhile (a timeout around a stop, say) is passed on. A bare
    `contextlib.suppress(CancelledError)` around the `await` swallowed both, and the
    caller went on past its own timeout."""
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.done() or (current is not None and current.cancelling() > before):
            raise
