"""Prometheus metrics and the request-size guard, as one pure ASGI middleware (no per-request threads).

Requests are counted and timed by route *template* (``/users/{user_id}``), never by raw path, so the
label set stays small whatever ids clients send. Metrics are per process: with several workers, scrape
each or sum them.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BodyTooLarge(Exception):
    pass


class ServiceMiddleware:
    """Rejects bodies over ``max_body`` bytes with 413 (by Content-Length, or while streaming a chunked
    body) and records each request's route, status and latency."""

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
            seen = 0

            async def receive_wrapper():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        raise _BodyTooLarge()
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except _BodyTooLarge:
                if not status["started"]:
                    await self._too_large(send_wrapper, seen)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(path, scope.get("method", ""), status["code"], time.perf_counter() - t0)

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
