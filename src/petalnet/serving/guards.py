"""What stands between a request and the endpoints (ASGI middleware), outermost first:

    Observe      one access-log line per request (text or JSON) and the request metrics
    Deadline     a request gets --request-timeout seconds, its upload included: a client trickling bytes
                 gets 408 (upload not finished) or 503 (still waiting for the model), and lets go
    Authorize    `Authorization: Bearer TOKEN` on everything but the page (/) and /health: else 401
    Admit        at most --max-pending /predict requests in progress or waiting: the next gets 429 with
                 Retry-After at once, never a place in an unbounded queue (429, not 503: a load balancer
                 reads a 5xx as a failing server and may take it out of its pool)
    UploadLimit  a body over --max-upload-mb gets 413

Every refusal reads the request's body first (up to the upload limit, within the time limit): a client
still sending when the server closes the connection would get a reset instead of the answer.
The access log never holds a body, a query string or a header: no photo, no token.
"""

import asyncio
import hmac
import json
import logging
import time
from datetime import datetime, timezone

ACCESS_LOG = logging.getLogger("petalnet.access")
RETRY_AFTER_S = 1


def route(scope):
    """The request's path below the reverse proxy's prefix (--root-path)."""
    path, prefix = scope["path"], scope.get("root_path", "")
    if prefix and path.startswith(prefix):
        return path[len(prefix):] or "/"
    return path


class Observe:
    """Times each request, counts it in the metrics by route and status, writes its access-log line."""

    def __init__(self, app, metrics, log_format):
        self.app, self.metrics, self.log_format = app, metrics, log_format

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, seen = time.perf_counter(), {"status": 500, "in": 0, "out": 0}

        async def counted_receive():
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(route(scope), seen["status"], seconds)
            if self.log_format != "off":
                ACCESS_LOG.info(self.line(scope, seen, seconds))

    def line(self, scope, seen, seconds):
        client = scope.get("client") or ("-", 0)
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "client": client[0],
                  "method": scope["method"], "path": scope["path"][:200], "status": seen["status"],
                  "ms": round(1000 * seconds, 3), "bytes_in": seen["in"], "bytes_out": seen["out"]}
        if self.log_format == "json":
            return json.dumps(record)
        return (f"{record['time']} {record['client']} {record['method']} {json.dumps(record['path'])} "
                f"{record['status']} {record['ms']:.1f}ms in={record['bytes_in']} out={record['bytes_out']}")


class Deadline:
    """The whole request, upload included, within `seconds`; then 408 (upload unfinished) or 503."""

    def __init__(self, app, seconds, metrics):
        self.app, self.seconds, self.metrics = app, seconds, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"received": scope["method"] in ("GET", "HEAD", "OPTIONS"), "answered": False}

        async def tracked_receive():
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                state["received"] = True
            return message

        async def tracked_send(message):
            state["answered"] = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, tracked_receive, tracked_send), self.seconds)
        except asyncio.TimeoutError:
            if state["answered"]:
                raise
            if not state["received"]:
                self.metrics.rejected.labels("upload_timeout").inc()
                return await json_response(send, 408, f"the request did not arrive within {self.seconds:g} s",
                                           [(b"connection", b"close")])
            self.metrics.rejected.labels("timeout").inc()
            await json_response(send, 503, f"no answer within {self.seconds:g} s: the server is busy",
                                [(b"retry-after", str(RETRY_AFTER_S).encode())])


class Authorize:
    """Requests other than the page and /health carry the token; the same 401 for a missing or wrong one."""

    OPEN = ("/", "/health")

    def __init__(self, app, token, max_bytes):
        self.app, self.token, self.max_bytes = app, token.encode("utf-8"), max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or route(scope) in self.OPEN or self.allowed(scope):
            return await self.app(scope, receive, send)
        await drain(receive, self.max_bytes)
        await json_response(send, 401, "this server needs its token: send 'Authorization: Bearer TOKEN'",
                            [(b"www-authenticate", b"Bearer")])

    def allowed(self, scope):
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                given = given.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(given, self.token)  # constant time: the answer's timing tells nothing


class Admit:
    """At most `limit` /predict requests inside at once; the next gets 429 + Retry-After without waiting."""

    PATHS = ("/predict",)

    def __init__(self, app, limit, metrics, max_bytes):
        self.app, self.limit, self.metrics, self.max_bytes = app, limit, metrics, max_bytes
        self.inside = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or route(scope) not in self.PATHS:
            return await self.app(scope, receive, send)
        if self.inside >= self.limit:
            self.metrics.rejected.labels("full").inc()
            await drain(receive, self.max_bytes)
            return await json_response(send, 429, f"the server is busy ({self.limit} requests in progress): "
                                                  f"retry in {RETRY_AFTER_S} s",
                                       [(b"retry-after", str(RETRY_AFTER_S).encode())])
        self.inside += 1
        self.metrics.pending.set(self.inside)
        try:
            await self.app(scope, receive, send)
        finally:
            self.inside -= 1
            self.metrics.pending.set(self.inside)


class UploadLimit:
    """A POST body over max_bytes gets 413 (the body is drained first, so clients read it)."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await drain(receive, limit=int(declared))
            return await json_response(send, 413, f"upload of {int(declared)} bytes is over the "
                                                  f"{self.max_bytes} byte limit")
        body, size, more = [], 0, True
        while more:
            message = await receive()
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await drain(receive, limit=8 * self.max_bytes)
                return await json_response(send, 413, f"upload over the {self.max_bytes} byte limit")
        whole = b"".join(body)

        async def replay():
            return {"type": "http.request", "body": whole, "more_body": False}

        return await self.app(scope, replay, send)


async def drain(receive, limit):
    """Read and drop the request's body, up to `limit` bytes."""
    seen = 0
    while seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def json_response(send, status, detail, headers=()):
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
