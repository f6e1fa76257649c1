"""Read timeouts: a client that stalls while sending its request head or body is cut off.

uvicorn bounds only the idle time *between* requests (``timeout_keep_alive``); a client that opens a
connection and sends half a header, or a body slower than a byte a minute, holds a connection (and,
for the body, a handler) forever. Two bounds, both ``service.read_timeout_s``:

- the request head must arrive whole within it (from the connection's first byte, or the end of the
  previous response): :class:`TimedH11Protocol` closes the connection otherwise;
- while the body is incomplete, each chunk must arrive within it of the last: :class:`BodyTimeoutMiddleware`
  answers 408 otherwise (and uvicorn closes the connection, whose body was never read).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from montage.service.errors import ApiError

log = logging.getLogger("montage.service")


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bound on receiving a request head; see the module docstring."""

    read_timeout_s: float = 30.0
    _head_timer: asyncio.TimerHandle | None = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            log.info("closed a connection from %s: no complete request head within %.0f s",
                     self.client, self.read_timeout_s)  # fmt: skip
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm()
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle gap
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def timed_protocol(read_timeout_s: float) -> type[TimedH11Protocol]:
    """The protocol class to pass as uvicorn's ``http=``, bound to ``read_timeout_s``."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout_s": read_timeout_s})


class BodyTimeoutMiddleware:
    """Answer 408 when a request body stalls for ``timeout_s`` between chunks (see the module docstring)."""

    def __init__(self, app: Any, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def bounded() -> Any:
            nonlocal complete
            if complete:  # after the body, receive() waits for a disconnect: that may take any time
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise ApiError(408, "request_timeout", f"the request body stalled for {self.timeout_s:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, bounded, send)
