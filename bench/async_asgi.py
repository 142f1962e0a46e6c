"""The ASGI app that bench/async.py serves with granian: the Python
counterpart of the echo plugin's `async_application`.

  /sleep/<ms>   answers `slept <ms>` after `await asyncio.sleep(ms / 1000)`
  WebSocket     at any path: accepted, every message sent back as it came
                (text as text, binary as binary) until the client leaves

Standard library only.
"""

from __future__ import annotations

import asyncio

MAX_SLEEP_MS = 60_000  # as the echo plugin


async def app(scope, receive, send):
    """The ASGI entry point: lifespan, HTTP and WebSocket scopes."""
    if scope["type"] == "http":
        await sleep_answer(scope, send)
    elif scope["type"] == "websocket":
        await websocket_echo(receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def sleep_answer(scope, send):
    """`/sleep/<ms>`: waits, then says so; any other path gets 404."""
    ms = sleep_ms(scope["path"])
    if ms is None:
        status, body = 404, b"not found\n"
    else:
        await asyncio.sleep(ms / 1000)
        status, body = 200, f"slept {ms}".encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def sleep_ms(path: str) -> int | None:
    """The milliseconds `/sleep/<ms>` asks for (capped), or None."""
    prefix = "/sleep/"
    if not path.startswith(prefix) or not path[len(prefix) :].isdigit():
        return None
    return min(int(path[len(prefix) :]), MAX_SLEEP_MS)


async def websocket_echo(receive, send):
    """Accepts the socket and echoes every message until the client leaves."""
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event.get("bytes") or b""})
        elif kind == "websocket.disconnect":
            return


async def lifespan(receive, send):
    """Nothing to set up or tear down: acknowledges start-up and shutdown."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
