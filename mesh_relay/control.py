"""The relay's local control socket: a JSON-lines protocol for applications and tests.

Belongs here: ``ControlServer`` (a Unix socket, or TCP bound to a loopback address,
serving one ``MeshRuntime``) and ``ControlClient`` (its asyncio client). The protocol,
one JSON object per line each way (docs/mesh.md §14 has the table):

- requests: ``{"op": "send", "to": "0x<40 hex>", "payload": "<hex>", "lifetime": 300}``
  → ``{"ok": true, "op": "send", "id": "<32 hex>"}``; ``{"op": "status"}`` →
  ``{"ok": true, "op": "status", "status": {...}}``; ``{"op": "snapshot"}`` (write the
  snapshot now) → ``{"ok": true, "op": "snapshot", "written": bool}``. Any request may
  carry a ``"tag"``, echoed in its reply. A bad request gets ``{"ok": false, "error":
  "..."}`` and the connection stays open.
- events, pushed to every connected client as they happen: ``{"event": "deliver",
  "from": "0x...", "id": "...", "payload": "<hex>"}``, ``{"event": "delivered", "id":
  "..."}``, ``{"event": "expired", "id": "..."}``.

Deliveries that arrive while no client is connected wait in a bounded backlog (oldest
dropped, counted) and go to the next client that connects; outcomes are not kept (they
are in the log). A client that does not read its events is disconnected once its buffer
passes a bound, so it cannot make the relay hold memory without limit.

The control socket is local by design: it can make the relay send as its own key, so it
must never listen on anything but a Unix path or a loopback address (checked).

Does not belong here: the node (``runtime``), the command line (``cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections import deque
from pathlib import Path

from mesh_relay.effects import Deliver, EventDelivered
from mesh_relay.errors import ConfigError, MeshError
from mesh_relay.runtime import AppEvent, MeshRuntime

log = logging.getLogger("mesh_relay.control")

_BACKLOG = 10_000
_CLIENT_BUFFER = 4 << 20
_LINE_LIMIT = 1 << 20
"""A request line may carry a payload of up to 16 KiB in hex; 1 MiB is far above that."""


def parse_control_address(value: str) -> Path | tuple[str, int]:
    """``HOST:PORT`` on loopback, or a Unix socket path (anything with a ``/`` or no ``:``)."""
    if "/" in value or ":" not in value:
        return Path(value)
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError("the control socket may listen only on a loopback address")
        return host, int(port)
    except ValueError as exc:
        raise ConfigError(f"control address {value!r}: {exc}") from None


def event_json(event: AppEvent) -> dict[str, object]:
    """The JSON form of one application event."""
    if isinstance(event, Deliver):
        return {
            "event": "deliver",
            "from": "0x" + event.origin.hex(),
            "id": event.message_id.hex(),
            "payload": event.payload.hex(),
        }
    if isinstance(event, EventDelivered):
        return {"event": "delivered", "id": event.message_id.hex()}
    return {"event": "expired", "id": event.message_id.hex()}


class ControlServer:
    """Serves a ``MeshRuntime`` on a Unix socket or a loopback TCP port."""

    def __init__(self, runtime: MeshRuntime, address: Path | tuple[str, int]) -> None:
        self._runtime = runtime
        self._address = address
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._backlog: deque[bytes] = deque(maxlen=_BACKLOG)
        self._queue: asyncio.Queue[AppEvent] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self.bound: str = ""

    async def start(self) -> None:
        if isinstance(self._address, Path):
            with contextlib.suppress(FileNotFoundError):
                self._address.unlink()  # a socket left by a relay that was killed
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._address), limit=_LINE_LIMIT
            )
            self._address.chmod(0o600)
            self.bound = str(self._address)
        else:
            self._server = await asyncio.start_server(
                self._serve, self._address[0], self._address[1], limit=_LINE_LIMIT
            )
            host, port = self._server.sockets[0].getsockname()[:2]
            self.bound = f"{host}:{port}"
        self._queue = self._runtime.subscribe()
        self._pump_task = asyncio.create_task(self._pump(), name="control events")

    async def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        if self._queue is not None:
            self._runtime.unsubscribe(self._queue)
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        if isinstance(self._address, Path):
            with contextlib.suppress(FileNotFoundError):
                self._address.unlink()

    async def _pump(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            line = json.dumps(event_json(event)).encode() + b"\n"
            if not self._clients:
                if isinstance(event, Deliver):
                    if len(self._backlog) == self._backlog.maxlen:
                        self._runtime.stats["control_backlog_dropped"] += 1
                    self._backlog.append(line)
                continue
            for writer in list(self._clients):
                self._write(writer, line)

    def _write(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        if writer.is_closing():
            self._clients.discard(writer)
            return
        if writer.transport.get_write_buffer_size() > _CLIENT_BUFFER:
            self._runtime.stats["control_clients_dropped"] += 1
            log.warning("control client does not read its events: disconnected")
            self._clients.discard(writer)
            writer.transport.abort()
            return
        writer.write(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        while self._backlog:
            self._write(writer, self._backlog.popleft())
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    self._write(writer, _reply({"ok": False, "error": "line too long"}))
                    break
                if not line:
                    break
                if line.strip():
                    self._write(writer, _reply(await self._handle(line)))
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, object]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        reply: dict[str, object] = {"op": request.get("op")}
        if "tag" in request:
            reply["tag"] = request["tag"]
        try:
            reply.update(await self._dispatch(request))
        except (MeshError, ValueError, TypeError, KeyError) as exc:
            reply.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return reply

    async def _dispatch(self, request: dict[str, object]) -> dict[str, object]:
        op = request.get("op")
        runtime = self._runtime
        if op == "send":
            to, payload = request["to"], request.get("payload", "")
            lifetime = request.get("lifetime", 300)
            if not isinstance(to, str) or not isinstance(payload, str):
                raise TypeError("'to' and 'payload' are hex strings")
            if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
                raise TypeError("'lifetime' is a number of seconds")
            message_id = runtime.send(_hex(to, "to"), _hex(payload, "payload"), float(lifetime))
            return {"ok": True, "id": message_id.hex()}
        if op == "status":
            return {"ok": True, "status": runtime.status()}
        if op == "snapshot":
            return {"ok": True, "written": await runtime.save_snapshot()}
        raise ValueError(f"unknown op {op!r} (send, status, snapshot)")


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)
    except ValueError:
        raise ValueError(f"'{what}' is not hex") from None


def _reply(reply: dict[str, object]) -> bytes:
    return json.dumps(reply).encode() + b"\n"


class ControlClient:
    """An asyncio client of the control socket: requests and the events between them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.events: deque[dict[str, object]] = deque()
        """Events read while waiting for a reply, in order; ``next_event`` takes them."""

    @classmethod
    async def connect(cls, address: str) -> ControlClient:
        where = parse_control_address(address)
        if isinstance(where, Path):
            reader, writer = await asyncio.open_unix_connection(str(where), limit=_LINE_LIMIT)
        else:
            reader, writer = await asyncio.open_connection(*where, limit=_LINE_LIMIT)
        return cls(reader, writer)

    async def request(self, **request: object) -> dict[str, object]:
        """Send one request; return its reply (events that come first are queued)."""
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        while True:
            message = await self._read()
            if "event" in message:
                self.events.append(message)
            else:
                return message

    async def send(self, to: bytes, payload: bytes, lifetime: float = 300.0) -> bytes:
        """Send a payload; its message id (``MeshError`` text in a ``RuntimeError``)."""
        reply = await self.request(op="send", to=to.hex(), payload=payload.hex(), lifetime=lifetime)
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error")))
        return bytes.fromhex(str(reply["id"]))

    async def next_event(self) -> dict[str, object]:
        """The next event (queued or read now)."""
        if self.events:
            return self.events.popleft()
        while True:
            message = await self._read()
            if "event" in message:
                return message

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, object]:
        line = await self._reader.readline()
        if not line:
            raise ConnectionError("control socket closed")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ConnectionError("control socket sent something that is not an object")
        return message
