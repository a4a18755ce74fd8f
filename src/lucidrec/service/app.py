"""The FastAPI application: thin typed endpoints over the engine, the feedback store and the key ring.

``create_app(settings)`` builds one app; the model loads once per process (at start-up unless
``preload=False``, else on first use) and seeds the store on the database's first start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from lucidrec import __version__
from lucidrec.errors import ConfigError, DataError, DependencyError, LucidrecError, ModelError, UnknownIdError
from lucidrec.service import engine, schemas, tombstones
from lucidrec.service.auth import READ, WRITE, KeyRing, key_id, key_in_url, presented_key
from lucidrec.service.headers import SecurityHeaders
from lucidrec.service.metrics import Metrics, ServiceMiddleware
from lucidrec.service.pool import PoolSaturated, WorkPool
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
from lucidrec.service.store import DEFAULT_MAX_HISTORY, FeedbackStore, StorageError
from lucidrec.service.writer import BatchWriter

log = logging.getLogger("lucidrec.service")
MAX_BODY_BYTES = 256 * 1024
_FIELD = re.compile(r"^[A-Za-z_][\w.\[\]]{0,60}$")
STATUS_FOR_ERROR = {
    UnknownIdError: 404,
    ConfigError: 422,
    DataError: 422,
    ModelError: 503,
    DependencyError: 503,
    StorageError: 503,
}


@dataclass
class ServiceSettings:
    model_dir: Path
    db_path: Path
    api_keys: list[str] = field(default_factory=list)  # write keys: reads, feedback and forgetting
    read_api_keys: list[str] = field(default_factory=list)  # read keys: reads of stored users' data only
    # Reads of personal data (/users, /users/{id}/history, /recommend for a stored user) need a key unless
    # this is set (serve --public-reads). Catalog reads and anonymous recommends stay open, throttled.
    public_reads: bool = False
    rate_limit: float = 50.0  # requests per second per key; 0 turns it off
    rate_burst: float | None = None
    # Requests without a key, per client address (0 turns it off), and failed key checks per client
    # address: a small burst, then 429, so keys cannot be guessed at speed.
    anon_rate_limit: float = 10.0
    anon_rate_burst: float | None = None
    auth_fail_rate: float = 1.0
    auth_fail_burst: float = 10.0
    # Worker threads for the model and the store, and how many requests each pool admits (running +
    # waiting) before answering 503. One thread by default: a recommend holds the GIL for most of its
    # time, and a second thread measured 25% less throughput (334 vs 444 requests/s at 32 clients);
    # cores are used with --workers.
    threads: int = 1
    queue: int = 64
    # Most recent stored rows of a user that a request reads (older rows stay stored).
    max_history: int = DEFAULT_MAX_HISTORY
    # Per-request cost bound (engine.request_cost units, about milliseconds of CPU).
    max_cost: float = engine.DEFAULT_MAX_COST
    synchronous: str = "FULL"  # the store's durability: FULL fsyncs every acknowledged write
    max_body: int = MAX_BODY_BYTES
    preload: bool = True
    # Threads of the query encoder per process (None: the encoder's default). serve sets 1: requests are
    # the parallelism, and intra-op threads on top oversubscribe the cores.
    encoder_threads: int | None = None

    def __repr__(self) -> str:  # never print the keys
        return (
            f"ServiceSettings(model_dir={self.model_dir}, db_path={self.db_path}, api_keys=<{len(self.api_keys)}>, "
            f"read_api_keys=<{len(self.read_api_keys)}>)"
        )


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


API_DESCRIPTION = """Recommendations that explain themselves.

**Keys.** Writes, and reads of stored users' data unless the server runs with --public-reads, need an API
key: `Authorization: Bearer KEY` or `X-API-Key: KEY`, never in the URL (a URL carrying one is refused).
Two kinds: a **read** key reads stored users' data (`GET /users`, `GET /users/{id}/history`, `POST /recommend`
for a stored user); a **write** key also writes feedback (`POST /feedback`) and forgets users
(`DELETE /users/{id}`); a read key used for a write gets 403. Key file (`--api-keys-file`): one key per
line as `read: KEY` or `write: KEY` (a bare `KEY` is a write key), `#` comments; or the environment
variables `LUCIDREC_READ_KEYS` / `LUCIDREC_API_KEYS` (comma-separated). Hand web pages read keys.

**Ids.** User and item ids are 1..128 printable characters; `/`, `,`, `:` and spaces are allowed. Every id
`POST /feedback` accepts can be read (`GET /users/{id}/history`) and forgotten (`DELETE /users/{id}`):
send it percent-encoded in the path (`team/alice` as `team%2Falice`; its `/` also works as it is).
Refused at write time: control characters, and the ids `.` and `..` (no URL path can carry them).

**Forgetting.** `DELETE /users/{id}` writes a tombstone into the model folder (every later load of the
folder, by `serve`, `recommend`, `batch` or a fresh database's seeding, treats the user as a stranger, and
`lucidrec train --out` leaves them out), then erases their rows from the database file and its WAL. It
is idempotent: a repeat answers 200 and completes a forget that was cut short.

**Client addresses.** Throttles (requests without a key, failed key checks) count per client address: the
TCP peer. `X-Forwarded-For` is ignored unless the server runs behind a proxy named in
`lucidrec serve --forwarded-allow-ips` (then that proxy's header gives the address).

**Storage.** When the feedback database cannot store a write (disk full, file removed, read-only) the
write answers 503 with a JSON body naming the cause; `GET /health` then reports `status: degraded`
(503). The API reference below is rendered by this package's own page (no third-party scripts)."""

BUSY = {"model": ErrorResponse, "description": "server busy: retry after Retry-After seconds"}
ERROR_RESPONSES = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {
        400: "bad JSON",
        401: "missing or wrong API key",
        403: "a read key used for a write",
        404: "unknown user or item",
        413: "body too large",
        422: "invalid field",
        429: "rate limit",
    }.items()
}


def create_app(settings: ServiceSettings, model=None) -> FastAPI:
    """``model``: the Recommender already loaded from ``settings.model_dir`` (else loaded at start-up)."""
    svc = _Service(settings, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.preload:
            svc.model()
        yield
        svc.close()

    app = FastAPI(
        title="lucidrec",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(_no_key_in_url)],
        # The interactive docs are served from this package (no CDN script on the origin that holds the
        # web page's key): see /docs below.
        docs_url=None,
        redoc_url=None,
    )
    # "/recommend/" is a 404 naming the path, not a 307 to an address built from the request's Host header.
    app.router.redirect_slashes = False
    app.state.store, app.state.holder, app.state.metrics = svc.store, svc.holder, svc.metrics
    app.state.pools = svc.pools
    app.state.rows_changed = svc.rows_changed
    app.add_middleware(ServiceMiddleware, metrics=svc.metrics, max_body=settings.max_body)
    app.add_middleware(SecurityHeaders)
    _error_handlers(app, svc)
    _recommend_routes(app, svc)
    _user_routes(app, svc)
    _item_routes(app, svc)
    _health_routes(app, svc)
    _page_routes(app)
    return app


class _Service:
    """What the endpoints share: the settings, the feedback store, the model (loaded once per process), the
    key ring and its throttles, the work pools and the metrics."""

    def __init__(self, settings: ServiceSettings, model=None):
        self.settings = settings
        self.store = FeedbackStore(settings.db_path, synchronous=settings.synchronous)
        self.holder = engine.ModelHolder(settings.model_dir, settings.encoder_threads, model)
        # A key listed as both kinds is a write key.
        self.keys = KeyRing({**{k: READ for k in settings.read_api_keys}, **{k: WRITE for k in settings.api_keys}})
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.anon_limiter = RateLimiter(settings.anon_rate_limit, settings.anon_rate_burst)
        self.fail_limiter = RateLimiter(settings.auth_fail_rate, settings.auth_fail_burst)
        self.metrics = Metrics()
        # The model and the database never run on the event loop: /health and every other request stay
        # answerable while recommends run. Writes have their own thread so they never queue behind reads.
        self.compute = WorkPool("compute", settings.threads, settings.queue)
        self.writes = WorkPool("write", 1, settings.queue)  # deletes (rare, with a checkpoint)
        self.feedback_writer = BatchWriter(self.store, settings.queue)  # group commit: one fsync per batch of rows
        self.pools = {"compute": self.compute, "write": self.writes, "feedback": self.feedback_writer}
        self.started = threading.Event()
        self._start_lock = threading.Lock()
        self._rows_seen = {"at": -1.0, "n": 0}  # the row count /health reports, refreshed at most once a second

    def model(self):
        """The model, loaded once per process; the first load also seeds a new database."""
        if not self.started.is_set():
            with self._start_lock:
                if not self.started.is_set():
                    _start(self.holder, self.store)
                    self.rows_changed()
                    self.metrics.model_loaded.set(1)
                    self.started.set()
        return self.holder.get()

    def close(self) -> None:
        self.compute.close()
        self.writes.close()
        self.feedback_writer.close()
        self.store.close()

    async def row_count(self) -> int:
        # COUNT(*) reads the whole table: off the event loop, and at most once a second however often
        # /health is called (after a write in this process, at once).
        if time.monotonic() - self._rows_seen["at"] > 1.0:
            self._rows_seen["n"] = await asyncio.to_thread(self.store.count)
            self._rows_seen["at"] = time.monotonic()
        return self._rows_seen["n"]

    def rows_changed(self) -> None:
        self._rows_seen["at"] = -1.0

    # ------------------------------------------------------------------ access control
    def throttle(self, bucket: RateLimiter, client: str, what: str) -> None:
        wait = bucket.acquire(client)
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise HTTPProblem(
                429,
                f"rate limit: over {bucket.rate:g} {what}/s from this client. Fix: retry after {retry} s"
                + (" with a valid API key." if what != "requests without a key" else ", or send an API key."),
                "authorization",
                {"Retry-After": str(retry)},
            )

    def authorise(self, request: Request, need: str | None) -> str | None:
        """Check the request's key against ``need`` (None: no key required; READ; WRITE) and throttle it.
        Returns the presented key's kind (None without a key)."""
        key = presented_key(request.headers)
        # The socket's peer address: X-Forwarded-For counts only from proxies named in serve's
        # --forwarded-allow-ips (uvicorn rewrites the client then), so rotating it buys no fresh throttle.
        client = request.client.host if request.client else "-"
        if key is None:
            if need is None:
                self.throttle(self.anon_limiter, client, "requests without a key")
                return None
            self.throttle(self.fail_limiter, client, "failed key checks")
            hint = "" if len(self.keys) else " This server has no keys configured (LUCIDREC_API_KEYS, --api-keys-file)."
            raise HTTPProblem(
                401,
                f"authorization: an API key is required.{hint} Fix: send 'Authorization: Bearer KEY' or "
                "'X-API-Key: KEY'.",
                "authorization",
                {"WWW-Authenticate": "Bearer"},
            )
        kind = self.keys.kind_of(key)
        if kind is None:
            # The presented key is never echoed or logged; guessing is throttled per client address.
            self.throttle(self.fail_limiter, client, "failed key checks")
            raise HTTPProblem(
                401,
                "authorization: the API key is not valid. Fix: use a configured key.",
                "authorization",
                {"WWW-Authenticate": "Bearer"},
            )
        self._key_rate(key)
        if need == WRITE and kind != WRITE:
            raise HTTPProblem(
                403,
                "authorization: this is a read key; writing feedback and forgetting users need a write key. "
                "Fix: send a write key (a 'write: KEY' line of the key file, or LUCIDREC_API_KEYS).",
                "authorization",
            )
        return kind

    def _key_rate(self, key: str) -> None:
        wait = self.limiter.acquire(key_id(key))
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise HTTPProblem(
                429,
                f"rate limit: over {self.limiter.rate:g} requests/s for this key. Fix: retry after {retry} s or slow "
                "down.",
                "authorization",
                {"Retry-After": str(retry)},
            )

    async def write_access(self, request: Request) -> None:
        self.authorise(request, WRITE)

    async def read_access(self, request: Request) -> None:
        """Reads of personal data (stored histories, the user list): keyed unless --public-reads."""
        self.authorise(request, None if self.settings.public_reads else READ)

    async def open_access(self, request: Request) -> None:
        """Catalog reads: open to anyone (throttled per client when no key is sent)."""
        self.authorise(request, None)


# ---------------------------------------------------------------------- errors -> clear 4xx
def _error_handlers(app: FastAPI, svc: _Service) -> None:
    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem):
        return _json(exc.status, exc.detail, exc.field, headers=exc.headers)

    @app.exception_handler(PoolSaturated)
    async def _saturated(request: Request, exc: PoolSaturated):
        return _json(
            503,
            f"busy: {exc.pending} requests are already running or waiting in this server process. Fix: retry "
            f"after {exc.retry_after} s, or add server workers.",
            None,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(sqlite3.Error)
    async def _storage(request: Request, exc: sqlite3.Error):
        # A database failure outside a write (a read of a removed or unreadable file): the same 503 shape.
        svc.store.last_error = (
            f"storage: the feedback database cannot be read ({exc}). Fix: check {svc.settings.db_path}."
        )
        log.error("feedback store: %s", exc)
        return _json(503, svc.store.last_error, "storage")

    app.exception_handler(StarletteHTTPException)(_http_exception)
    app.exception_handler(LucidrecError)(_lucidrec_error)
    app.exception_handler(RequestValidationError)(_validation)


async def _http_exception(request: Request, exc: StarletteHTTPException):
    # Starlette/FastAPI's own errors (unknown path, wrong method, a body that cannot be read) in the
    # service's shape: what is wrong, which part of the request, and the fix.
    status = exc.status_code
    fixes = {
        404: ("path", "see the endpoints at /docs"),
        405: ("method", "see the methods each endpoint takes at /docs"),
        400: ("body", "send a JSON object within the size limit"),
    }
    name, fix = fixes.get(status, ("request", "see /docs"))
    return _json(status, f"{name}: {exc.detail}. Fix: {fix}.", name, headers=getattr(exc, "headers", None))


async def _lucidrec_error(request: Request, exc: LucidrecError):
    status = next((s for cls, s in STATUS_FOR_ERROR.items() if isinstance(exc, cls)), 400)
    msg = str(exc)
    if isinstance(exc, StorageError):
        log.error("%s", msg)  # one line, no traceback: the cause is in the message
    head = msg.split(":", 1)[0]
    field = head if ":" in msg and _FIELD.match(head) else None
    return _json(status, msg, field)


async def _validation(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "invalid JSON")
        return _json(400, f"body: not valid JSON ({reason}). Fix: send a JSON object.", "body")
    items = []
    for e in errors:
        name = _field_name(e.get("loc", ()))
        # One period at the end, whoever wrote the message ("Fix: swap them." + "." was "..").
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ").rstrip(".")
        items.append({"field": name, "message": msg, "type": e.get("type")})
    first = items[0]
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    if "Fix:" not in detail:
        detail += ". Fix: see the request schema at /docs"
    return _json(422, detail + ".", first["field"], errors=items)


# ---------------------------------------------------------------------- endpoints
def _recommend_routes(app: FastAPI, svc: _Service) -> None:
    settings = svc.settings

    @app.post("/recommend", response_model=RecommendResponse, responses={**ERROR_RESPONSES, 503: BUSY})
    async def recommend(request: Request, req: RecommendRequest):
        """Top-k items for a stored user and/or an inline history and/or a query, with reasons. A stored
        user's history is personal data: it needs a key unless the server runs with --public-reads."""
        svc.authorise(request, READ if req.user is not None and not settings.public_reads else None)
        # Bounded before it runs: the cost estimate is checked, then the work waits for a pool thread.
        # The inline part is checked here, before the request takes a slot; the stored part once it is read.
        engine.check_cost(req, 0, settings.max_cost)
        result = await svc.compute.run(
            lambda: engine.recommend(svc.model(), svc.store, req, settings.max_history, settings.max_cost)
        )
        return JSONResponse(result)

    @app.post(
        "/feedback",
        status_code=201,
        response_model=FeedbackResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(svc.write_access)],
    )
    async def feedback(req: FeedbackRequest):
        """Record one event; it counts from the user's very next recommendation. Acknowledged (201) only
        once the row is on disk (synchronous=FULL; concurrent writes share one commit)."""
        rec = svc.holder.get() if svc.started.is_set() else await svc.compute.run(svc.model)  # a lazy first load
        engine.check_item(rec, req.item, "item")
        ts = req.effective_timestamp(time.time())
        row_id, size = await svc.feedback_writer.add(req.user, req.item, req.event, req.rating, ts)
        svc.metrics.feedback_rows.inc()
        svc.rows_changed()
        return FeedbackResponse(
            id=row_id, user=req.user, item=req.item, event=req.event, rating=req.rating, timestamp=ts, history_size=size
        )


_USER_PATH = PathParam(
    ...,
    min_length=1,
    max_length=MAX_ID_CHARS,
    description="User id, percent-encoded ('team/alice' as team%2Falice, or as it is: ids may hold '/').",
)


def _user_routes(app: FastAPI, svc: _Service) -> None:
    @app.delete(
        "/users/{user_id:path}",
        response_model=DeleteResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(svc.write_access)],
    )
    async def forget_user(user_id: str = _USER_PATH):
        """Forget a user: a tombstone in the model folder (every later load of the folder, by any command,
        treats them as a stranger), then every stored row erased from the database file and its WAL (with a
        tombstone there too). Idempotent: a repeat answers 200 and completes a forget that was cut short;
        404 only for an id that was never stored, known to the model or forgotten."""
        schemas.check_id(user_id, "user_id")
        done = await svc.writes.run(lambda: _forget(svc, user_id))
        svc.rows_changed()
        if done is None:
            raise UnknownIdError(
                f"user_id: user '{user_id}' has no stored rows and was never known to the model or forgotten. "
                "Fix: check the id (send it percent-encoded, e.g. team%2Falice)."
            )
        n, checkpointed, tomb, already = done
        if not tomb:
            log.warning("forget: the model folder is not writable; no tombstone written there (the db has one)")
        return DeleteResponse(
            user=user_id,
            deleted_rows=n,
            wal_checkpointed=checkpointed,
            model_folder_tombstone=tomb,
            already_forgotten=already,
        )

    @app.get(
        "/users/{user_id:path}/history",
        response_model=HistoryResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(svc.read_access)],
    )
    async def user_history(
        user_id: str = _USER_PATH,
        limit: int = Query(DEFAULT_MAX_HISTORY, ge=1, le=DEFAULT_MAX_HISTORY, description="Most recent rows."),
        offset: int = Query(0, ge=0, le=2**62, description="Skip this many most recent rows (paging back in time)."),
    ):
        """A user's stored rows, oldest first: the most recent ``limit`` rows after skipping ``offset``."""
        schemas.check_id(user_id, "user_id")
        return await svc.compute.run(_history_page, svc, user_id, limit, offset)

    @app.get("/users", response_model=list[UserSummary], dependencies=[Depends(svc.read_access)])
    async def list_users(limit: int = Query(20, ge=1, le=500)):
        """The most active users in the store (for picking one on the web page)."""
        return [{"user": u, "events": n} for u, n in await svc.compute.run(svc.store.users, limit)]


def _forget(svc: _Service, user_id: str):
    """(rows deleted, WAL checkpointed, folder tombstone written, already forgotten), or None for an id
    that was never stored, known to the model or forgotten."""
    store, model_dir = svc.store, svc.settings.model_dir
    rec = svc.model()
    known = user_id in rec.known or store.user_rows(user_id) > 0
    before = store.is_tombstoned(user_id) or tombstones.digest(user_id) in tombstones.read(model_dir)
    if not known and not before:
        return None
    # The folder's tombstone first: if the process stops after it, the user is already a stranger
    # to every load of the folder, and a repeat erases the rows.
    tomb = tombstones.append(model_dir, [user_id])
    n, checkpointed = store.delete_user(user_id)
    return n, checkpointed, tomb, before and n == 0


def _history_page(svc: _Service, user_id: str, limit: int, offset: int) -> dict:
    rows = svc.store.history(user_id, limit=limit, offset=offset)
    if not rows:
        raise UnknownIdError(f"user_id: user '{user_id}' has no stored history there. Fix: check the id.")
    rec = svc.model()
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
    return {"user": user_id, "size": len(hist), "total": svc.store.user_rows(user_id), "history": hist}


def _item_routes(app: FastAPI, svc: _Service) -> None:
    @app.get(
        "/items/{item_id:path}",
        response_model=Item,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(svc.open_access)],
    )
    async def get_item(item_id: str = PathParam(..., min_length=1, max_length=MAX_ID_CHARS)):
        def lookup():
            rec = svc.model()
            engine.check_item(rec, item_id, "item_id")
            return engine.item_info(rec, rec.item_index[item_id])

        return await svc.compute.run(lookup)

    @app.get(
        "/items", response_model=ItemSearchResponse, responses=ERROR_RESPONSES, dependencies=[Depends(svc.open_access)]
    )
    async def search_items(search: str | None = Query(None, max_length=200), limit: int = Query(20, ge=1, le=200)):
        """Items whose title contains ``search`` (case-insensitive), or whose id is ``search``."""
        items = await svc.compute.run(lambda: engine.search_items(svc.model(), search, limit))
        return {"search": search, "count": len(items), "items": items}


def _health_routes(app: FastAPI, svc: _Service) -> None:
    @app.get("/health")
    async def health(request: Request):
        """Whether the server can answer and store: 200 ``ok``, or 503 ``degraded`` with ``storage`` saying
        why writes fail. Row counts, key configuration and queues only for a request with a valid key."""
        # On the event loop, never behind the model's pool: answers while heavy requests run.
        storage = svc.store.health()
        body = {
            "status": "ok" if storage["ok"] else "degraded",
            "version": __version__,
            "model_loaded": svc.holder.loaded,
            "storage": "ok" if storage["ok"] else "unavailable",
        }
        if presented_key(request.headers) is not None:
            svc.authorise(request, READ)  # a wrong key: 401, and counted by the failed-key throttle
            body.update(
                {
                    "storage_error": storage["error"],
                    "items": len(svc.holder.get().item_ids) if svc.holder.loaded else None,
                    "feedback_rows": await svc.row_count() if storage["ok"] else None,
                    "write_keys_configured": svc.keys.count(WRITE),
                    "read_keys_configured": svc.keys.count(READ),
                    "public_reads": svc.settings.public_reads,
                    "queued": {name: pool.pending for name, pool in svc.pools.items()},
                }
            )
        return JSONResponse(body, status_code=200 if storage["ok"] else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus():
        body, ctype = svc.metrics.render()
        return Response(body, media_type=ctype)


def _page_routes(app: FastAPI) -> None:
    """The web page and the API reference (package files, no CDN)."""
    static_dir = resources.files("lucidrec.service") / "static"

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(str(static_dir / "index.html"), media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    def docs():
        """The API reference, rendered from /openapi.json by this package's own script."""
        return FileResponse(str(static_dir / "docs.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")


async def _no_key_in_url(request: Request) -> None:
    """Keys are never taken from the URL: URLs end up in access logs, proxies and browser history."""
    name = key_in_url(request.query_params)
    if name is not None:
        raise HTTPProblem(
            400,
            f"{name}: API keys are not accepted in the URL (URLs are logged and cached). Fix: send the key in an "
            "'Authorization: Bearer KEY' or 'X-API-Key: KEY' header, and replace a key that was sent in a URL.",
            name,
        )


def _start(holder: engine.ModelHolder, store: FeedbackStore) -> None:
    """Load the model; on the database's first start, seed it with the model's known interactions, less
    the users forgotten before (tombstones in the model folder and in the database)."""
    holder.get()
    if not store.seeded():
        forgotten = tombstones.read(holder.model_dir)
        n = store.seed(holder.seed_rows(), origin=str(holder.model_dir), forgotten=forgotten)
        log.info("seeded the feedback store with %d interactions from %s", n, holder.model_dir)
