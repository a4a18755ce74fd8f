"""The FastAPI application: thin typed endpoints over the engine, the feedback store and the key ring.

``create_app(settings)`` builds one app; the model loads once per process (at start-up unless
``preload=False``, else on first use) and seeds the store on the database's first start.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from lucidrec import __version__
from lucidrec.errors import ConfigError, DataError, DependencyError, LucidrecError, ModelError, UnknownIdError
from lucidrec.service import engine
from lucidrec.service.auth import KeyRing, key_id, presented_key
from lucidrec.service.metrics import Metrics, ServiceMiddleware
from lucidrec.service.ratelimit import RateLimiter
from lucidrec.service.schemas import (
    MAX_ID_CHARS,
    DeleteResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HistoryResponse,
    Item,
    ItemSearchResponse,
    RecommendRequest,
    RecommendResponse,
    UserSummary,
)
from lucidrec.service.store import FeedbackStore

log = logging.getLogger("lucidrec.service")
MAX_BODY_BYTES = 256 * 1024
_FIELD = re.compile(r"^[A-Za-z_][\w.\[\]]{0,60}$")
STATUS_FOR_ERROR = {UnknownIdError: 404, ConfigError: 422, DataError: 422, ModelError: 503, DependencyError: 503}


@dataclass
class ServiceSettings:
    model_dir: Path
    db_path: Path
    api_keys: list[str] = field(default_factory=list)
    require_read_keys: bool = False
    rate_limit: float = 50.0  # requests per second per key; 0 turns it off
    rate_burst: float | None = None
    max_body: int = MAX_BODY_BYTES
    preload: bool = True
    # Threads of the query encoder per process (None: the encoder's default). serve sets 1: requests are
    # the parallelism, and intra-op threads on top oversubscribe the cores.
    encoder_threads: int | None = None

    def __repr__(self) -> str:  # never print the keys
        return f"ServiceSettings(model_dir={self.model_dir}, db_path={self.db_path}, api_keys=<{len(self.api_keys)}>)"


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None, headers: dict | None = None):
        self.status, self.detail, self.field, self.headers = status, detail, field, headers or {}


def _json(status: int, detail: str, field: str | None = None, errors=None, headers=None) -> JSONResponse:
    body = {"detail": detail, "field": field}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc) -> str:
    """('body', 'history', 0, 'rating') -> 'history[0].rating'; ('query', 'search') -> 'search'."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or (str(loc[0]) if loc else "body")


ERROR_RESPONSES = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {
        400: "bad JSON",
        401: "missing or wrong API key",
        404: "unknown user or item",
        413: "body too large",
        422: "invalid field",
        429: "rate limit",
    }.items()
}


def create_app(settings: ServiceSettings) -> FastAPI:
    store = FeedbackStore(settings.db_path)
    holder = engine.ModelHolder(settings.model_dir, settings.encoder_threads)
    keys = KeyRing(settings.api_keys)
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    metrics = Metrics()

    started = threading.Event()
    start_lock = threading.Lock()

    def model():
        """The model, loaded once per process; the first load also seeds a new database."""
        if not started.is_set():
            with start_lock:
                if not started.is_set():
                    _start(holder, store)
                    metrics.model_loaded.set(1)
                    started.set()
        return holder.get()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.preload:
            model()
        yield
        store.close()

    app = FastAPI(
        title="lucidrec",
        version=__version__,
        description="Recommendations that explain themselves. Write endpoints need an API key "
        "(`Authorization: Bearer KEY` or `X-API-Key: KEY`).",
        lifespan=lifespan,
    )
    app.state.store, app.state.holder, app.state.metrics = store, holder, metrics
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body=settings.max_body)

    # ------------------------------------------------------------------ errors -> clear 4xx
    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem):
        return _json(exc.status, exc.detail, exc.field, headers=exc.headers)

    @app.exception_handler(LucidrecError)
    async def _lucidrec_error(request: Request, exc: LucidrecError):
        status = next((s for cls, s in STATUS_FOR_ERROR.items() if isinstance(exc, cls)), 400)
        msg = str(exc)
        head = msg.split(":", 1)[0]
        field = head if ":" in msg and _FIELD.match(head) else None
        return _json(status, msg, field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = (bad_json.get("ctx") or {}).get("error", "invalid JSON")
            return _json(400, f"body: not valid JSON ({reason}). Fix: send a JSON object.", "body")
        items = []
        for e in errors:
            name = _field_name(e.get("loc", ()))
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            items.append({"field": name, "message": msg, "type": e.get("type")})
        first = items[0]
        detail = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
        if "Fix:" not in detail:
            detail += ". Fix: see the request schema at /docs"
        return _json(422, detail + ".", first["field"], errors=items)

    # ------------------------------------------------------------------ access control
    def _authorise(request: Request, required: bool) -> None:
        key = presented_key(request.headers)
        if key is None:
            if not required:
                return
            hint = "" if len(keys) else " This server has no keys configured (LUCIDREC_API_KEYS, --api-keys-file)."
            raise HTTPProblem(
                401,
                f"authorization: an API key is required.{hint} Fix: send 'Authorization: Bearer KEY' or "
                "'X-API-Key: KEY'.",
                "authorization",
                {"WWW-Authenticate": "Bearer"},
            )
        if not keys.match(key):
            # The presented key is never echoed or logged.
            raise HTTPProblem(
                401,
                "authorization: the API key is not valid. Fix: use a configured key.",
                "authorization",
                {"WWW-Authenticate": "Bearer"},
            )
        wait = limiter.acquire(key_id(key))
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise HTTPProblem(
                429,
                f"rate limit: over {limiter.rate:g} requests/s for this key. Fix: retry after {retry} s or slow down.",
                "authorization",
                {"Retry-After": str(retry)},
            )

    async def write_access(request: Request) -> None:
        _authorise(request, required=True)

    async def read_access(request: Request) -> None:
        _authorise(request, required=settings.require_read_keys)

    # ------------------------------------------------------------------ endpoints
    @app.post(
        "/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES, dependencies=[Depends(read_access)]
    )
    async def recommend(req: RecommendRequest):
        """Top-k items for a stored user and/or an inline history and/or a query, with reasons."""
        # Run on the event loop, not in the thread pool: the work is CPU-bound and holds the GIL, so
        # threads only interleave requests (every one finishes late) and add switching. Inline, requests
        # are served one after another per process (first come, first served); use --workers for cores.
        return JSONResponse(engine.recommend(model(), store, req))

    @app.post(
        "/feedback",
        status_code=201,
        response_model=FeedbackResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(write_access)],
    )
    async def feedback(req: FeedbackRequest):
        """Record one event; it counts from the user's very next recommendation."""
        # Inline like /recommend: a thread-pool write waits for the GIL behind every queued recommend
        # (feedback p50 630 ms at 32 clients, measured); the insert itself takes well under a millisecond.
        row_id, ts = engine.add_feedback(model(), store, req, time.time())
        metrics.feedback_rows.inc()
        return FeedbackResponse(
            id=row_id,
            user=req.user,
            item=req.item,
            event=req.event,
            rating=req.rating,
            timestamp=ts,
            history_size=store.user_rows(req.user),
        )

    user_path = PathParam(..., min_length=1, max_length=MAX_ID_CHARS, description="User id")

    @app.delete(
        "/users/{user_id}",
        response_model=DeleteResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(write_access)],
    )
    def forget_user(user_id: str = user_path):
        """Forget a user: every stored row goes; later requests treat them as a stranger."""
        n = store.delete_user(user_id)
        if n == 0:
            raise UnknownIdError(f"user_id: user '{user_id}' has no stored rows. Fix: check the id.")
        return DeleteResponse(user=user_id, deleted_rows=n)

    @app.get(
        "/users/{user_id}/history",
        response_model=HistoryResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(read_access)],
    )
    def user_history(user_id: str = user_path):
        rows = store.history(user_id)
        if not rows:
            raise UnknownIdError(f"user_id: user '{user_id}' has no stored history. Fix: check the id.")
        rec = model()
        hist = [
            {
                "id": r.id,
                "item": r.item,
                "event": r.event,
                "rating": r.rating,
                "timestamp": r.timestamp,
                "title": str(rec.titles[rec.item_index[r.item]]) if r.item in rec.item_index else None,
            }
            for r in rows
        ]
        return {"user": user_id, "size": len(hist), "history": hist}

    @app.get("/users", response_model=list[UserSummary], dependencies=[Depends(read_access)])
    def list_users(limit: int = Query(20, ge=1, le=500)):
        """The most active users in the store (for picking one on the web page)."""
        return [{"user": u, "events": n} for u, n in store.users(limit)]

    @app.get("/items/{item_id}", response_model=Item, responses=ERROR_RESPONSES, dependencies=[Depends(read_access)])
    def get_item(item_id: str = PathParam(..., min_length=1, max_length=MAX_ID_CHARS)):
        rec = model()
        engine.check_item(rec, item_id, "item_id")
        return engine.item_info(rec, rec.item_index[item_id])

    @app.get(
        "/items", response_model=ItemSearchResponse, responses=ERROR_RESPONSES, dependencies=[Depends(read_access)]
    )
    def search_items(search: str | None = Query(None, max_length=200), limit: int = Query(20, ge=1, le=200)):
        """Items whose title contains ``search`` (case-insensitive), or whose id is ``search``."""
        items = engine.search_items(model(), search, limit)
        return {"search": search, "count": len(items), "items": items}

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "version": __version__,
            "model_loaded": holder.loaded,
            "items": len(holder.get().item_ids) if holder.loaded else None,
            "feedback_rows": store.count(),
            "write_keys_configured": len(keys) > 0,
        }

    @app.get("/metrics", include_in_schema=False)
    def prometheus():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    # ------------------------------------------------------------------ the web page (package files, no CDN)
    static_dir = resources.files("lucidrec.service") / "static"

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(str(static_dir / "index.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    return app


def _start(holder: engine.ModelHolder, store: FeedbackStore) -> None:
    """Load the model; on the database's first start, seed it with the model's known interactions."""
    holder.get()
    if not store.seeded():
        n = store.seed(holder.seed_rows(), origin=str(holder.model_dir))
        log.info("seeded the feedback store with %d interactions from %s", n, holder.model_dir)
