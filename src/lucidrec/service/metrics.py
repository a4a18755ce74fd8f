"""Prometheus metrics and the request-size guard, as one pure ASGI middleware (no per-request threads).

Requests are counted and timed by route *template* (``/users/{user_id}``), never by raw path, and by
method from a fixed list (anything else is ``OTHER``; paths that match no route are ``unmatched``), so
the label set is fixed whatever clients send. Metrics are per process: with several workers, scrape each
or sum them.

The same middleware writes the access log (logger ``lucidrec.access``): method, route template, status
and time, never the raw path or the query string, so user ids and keys sent in a URL are not logged.
"""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access_log = logging.getLogger("lucidrec.access")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lucidrec_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lucidrec_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_loaded = Gauge("lucidrec_model_loaded", "1 once the model is loaded", registry=self.registry)
        self.feedback_rows = Counter("lucidrec_feedback_written", "Feedback rows written", registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        status = status if 100 <= status <= 599 else 500
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ServiceMiddleware:
    """Rejects bodies over ``max_body`` bytes with 413 (by Content-Length, or while reading a chunked
    body) and records each request's route, status and latency (metrics and the access log)."""

    def __init__(self, app, metrics: Metrics, max_body: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body:
                await self._too_large(send_wrapper, length)
                return
            if length or _chunked(scope):
                # Read the whole body (at most max_body bytes) before the app sees it: a chunked body has
                # no Content-Length, and an error raised while FastAPI reads would become a generic 400.
                chunks, seen = [], 0
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        status["code"] = 499  # the client went away mid-body: not a server error
                        return
                    chunks.append(message.get("body", b""))
                    seen += len(chunks[-1])
                    if seen > self.max_body:
                        await self._too_large(send_wrapper, seen)
                        return
                    if not message.get("more_body", False):
                        break
                receive = _replay(b"".join(chunks), receive)
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            seconds = time.perf_counter() - t0
            self.metrics.observe(path, scope.get("method", ""), status["code"], seconds)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                method = scope.get("method", "")
                access_log.info(
                    '%s "%s %s" %d %.1fms',
                    client[0],
                    method if method in METHODS else "OTHER",
                    path,
                    status["code"],
                    seconds * 1000,
                )

    async def _too_large(self, send, size: int) -> None:
        body = json.dumps(
            {
                "detail": f"body: {size} bytes is over the {self.max_body}-byte limit. Fix: send a smaller request "
                "(e.g. a shorter history or exclude list).",
                "field": "body",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _chunked(scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))


def _replay(body: bytes, receive):
    """A receive() that hands the buffered body over once, then defers to the real one (disconnects)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
