"""Issue 16 (hardening), one regression test per reproduction: no request stalls the service, metric
labels are fixed, stored histories are read capped, forgetting is complete, reads are keyed and guessing
is throttled, writes are durable, and hostile inputs get clear 4xx answers.

Real SQLite files and, where the event loop or the access log matter, a real uvicorn server on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import uvicorn  # noqa: E402
from test_service import KEY, make_client, own_model_dir, tiny_service_model  # noqa: E402

from lucidrec import query as query_module  # noqa: E402
from lucidrec.service import engine, tombstones  # noqa: E402
from lucidrec.service.app import ServiceSettings, create_app  # noqa: E402
from lucidrec.service.schemas import RecommendRequest  # noqa: E402
from lucidrec.service.store import FeedbackStore  # noqa: E402

WRITE = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


@pytest.fixture
def own_model(model_dir, tmp_path):
    return own_model_dir(model_dir, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app):
    """The app under a real uvicorn server in a thread (one event loop, like `lucidrec serve`)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _http(method: str, url: str, body=None, headers=None, timeout: float = 30) -> tuple[int, dict, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                         **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


def _burn(seconds: float):
    """A stand-in for a heavy recommend: pure-Python CPU work that holds the GIL (like title matching)."""

    def heavy(rec, store, req, *args, **kw):
        end = time.perf_counter() + seconds
        x = 0
        while time.perf_counter() < end:
            x += 1
        return {"user": req.user, "query": req.query, "history_source": "none", "history_size": 0, "items": []}

    return heavy


# ============================================================== 1. heavy work off the event loop, bounded
def _wait_for(cond, seconds: float = 10.0) -> None:
    end = time.perf_counter() + seconds
    while not cond() and time.perf_counter() < end:
        time.sleep(0.02)
    assert cond()


def test_health_answers_while_four_heavy_recommends_run(model_dir, tmp_path, monkeypatch):
    """/health never queues behind the model's pool: it answers while all four heavy requests are still
    pending (none finished, none failed). Its latency under this load is reported in
    the README's service section (was 18.8 s with the heavy requests on the event loop), not asserted here:
    on a shared 2-core machine a timing bound only measures the neighbours."""
    monkeypatch.setattr(engine, "recommend", _burn(4.0))
    app = create_app(ServiceSettings(model_dir=model_dir, db_path=tmp_path / "f.db", api_keys=[KEY],
                                     anon_rate_limit=0, threads=2, queue=8))  # fmt: skip
    with live_server(app) as base:
        _http("GET", base + "/health")  # warm the connection path
        results = []
        heavy = [
            threading.Thread(target=lambda: results.append(_http("POST", base + "/recommend", {"query": "x"})))
            for _ in range(4)
        ]
        for t in heavy:
            t.start()
        pool = app.state.pools["compute"]
        _wait_for(lambda: pool.pending == 4)  # all four admitted: two running, two waiting for a thread
        for _ in range(3):
            status, body, _ = _http("GET", base + "/health", headers=WRITE)
            assert status == 200 and body["queued"]["compute"] == 4
            assert results == [] and pool.pending == 4  # answered before any heavy request finished
        for t in heavy:
            t.join(timeout=60)
    assert [r[0] for r in results] == [200] * 4


def test_a_saturated_pool_answers_503_with_retry_after(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "recommend", _burn(2.0))
    app = create_app(ServiceSettings(model_dir=model_dir, db_path=tmp_path / "f.db", api_keys=[KEY],
                                     anon_rate_limit=0, threads=1, queue=2))  # fmt: skip
    with live_server(app) as base:
        results = []
        busy = [
            threading.Thread(target=lambda: results.append(_http("POST", base + "/recommend", {"query": "x"})))
            for _ in range(2)
        ]
        for t in busy:
            t.start()
        _wait_for(lambda: app.state.pools["compute"].pending == 2)
        status, body, headers = _http("POST", base + "/recommend", {"query": "x"})
        for t in busy:
            t.join(timeout=30)
    assert status == 503 and int(headers["Retry-After"]) >= 1 and "Fix:" in body["detail"]
    assert sorted(r[0] for r in results) == [200, 200]


def test_cost_bound_names_the_field_and_the_fix(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        item = c.get("/items").json()["items"][0]["item_id"]
        body = {"history": [{"item": item, "rating": 4}] * 1000, "k": 1000, "counterfactual": True}
        r = c.post("/recommend", json=body)
        assert r.status_code == 422, r.text
        out = r.json()
        assert out["field"] == "counterfactual" and "Fix:" in out["detail"] and "bound" in out["detail"]
        body["counterfactual"] = False  # the same request without it is within the bound
        assert c.post("/recommend", json=body).status_code == 200
        # The bound also counts the stored history, read (capped) before the work starts.
        for n in range(3):
            c.post("/feedback", json={"user": "cf", "item": item, "timestamp": 1000 + n}, headers=WRITE)
        ok = c.post("/recommend", json={"user": "cf", "k": 10, "counterfactual": True})
        assert ok.status_code == 200, ok.text


def test_request_cost_grows_with_each_part_and_every_plain_request_fits():
    base = engine.request_cost(RecommendRequest(query="x", k=10), 0)
    assert sum(base.values()) < 5
    big_k = sum(engine.request_cost(RecommendRequest(query="x", k=1000), 0).values())
    long_q = sum(engine.request_cost(RecommendRequest(query="q" * 2000, k=10), 0).values())
    assert big_k > sum(base.values()) and long_q > sum(base.values())
    # The largest request the schema allows without a counterfactual is admitted.
    worst = RecommendRequest(query="q" * 2000, k=1000, history=[{"item": "1"}] * 1000)
    engine.check_cost(worst, 1000, engine.DEFAULT_MAX_COST)
    with pytest.raises(engine.CostError, match="counterfactual: .* Fix:"):
        engine.check_cost(RecommendRequest(query="x", k=1000, counterfactual=True), 1000, engine.DEFAULT_MAX_COST)


def test_like_phrases_are_looked_up_a_bounded_number_of_times(monkeypatch):
    """ "something like " x 150 took 1.6 s on ML-100K: 150 title lookups, 6 fuzzy matches each."""
    titles = [f"Title number {i} of the catalog ({1950 + i % 50})" for i in range(2000)]
    parser = query_module.QueryParser(
        categories=[["Drama"]] * 2000, titles=titles, item_ids=[str(i) for i in range(2000)],
        years=[1950 + i % 50 for i in range(2000)],
    )  # fmt: skip
    calls = []
    real = query_module.difflib.get_close_matches
    monkeypatch.setattr(query_module.difflib, "get_close_matches", lambda *a, **k: calls.append(1) or real(*a, **k))
    t0 = time.perf_counter()
    parser.parse(("something like " * 150)[:2000])
    assert len(calls) <= query_module._MAX_FUZZY_LOOKUPS and time.perf_counter() - t0 < 1.0
    calls.clear()
    assert parser.parse("something like title number 7 of the catalog").like == ["7"]  # still found


# ============================================================== 2. a fixed metric label set
def test_made_up_methods_and_paths_do_not_grow_metrics(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        for i in range(20):  # every label combination the loop below can reach, once
            c.request(f"M{i}", f"/x{i}" if i % 2 else "/recommend")
        c.get("/metrics")  # the first scrape adds its own route's series
        size = len(c.get("/metrics").text)
        for i in range(2000):
            r = c.request(f"M{i}", f"/x{i}" if i % 2 else "/recommend")
            assert r.status_code in (404, 405) and "Fix:" in r.json()["detail"]
        text = c.get("/metrics").text
    assert len(text) <= size + 200, (size, len(text))  # only counter values changed
    assert 'method="OTHER",route="unmatched"' in text and 'method="OTHER",route="/recommend"' in text
    assert "M1999" not in text and "/x1999" not in text


# ============================================================== 3. a capped stored history
def test_a_user_with_100k_rows_recommends_from_the_most_recent_rows(model_dir, tmp_path):
    db = tmp_path / "f.db"
    with make_client(model_dir, db, max_history=1000) as c:
        items = [i["item_id"] for i in c.get("/items", params={"limit": 40}).json()["items"]]
        store = c.app.state.store
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO feedback (user, item, event, rating, timestamp) VALUES ('heavy', ?, 'liked', NULL, ?)",
                ((items[n % len(items)], float(n)) for n in range(100_000)),
            )
        rows = store.history("heavy")
        assert len(rows) == 1000 and rows[0].timestamp == 99_000 and rows[-1].timestamp == 99_999
        plan = " ".join(str(r) for r in sqlite3.connect(db).execute(
            "EXPLAIN QUERY PLAN SELECT id FROM feedback WHERE user = ? ORDER BY timestamp DESC, id DESC LIMIT 5",
            ("heavy",)))  # fmt: skip
        assert "feedback_user_time" in plan
        t0 = time.perf_counter()
        r = c.post("/recommend", json={"user": "heavy", "k": 10})
        took = time.perf_counter() - t0
        # (history_size counts distinct items: the 1,000 rows hold the 40 items)
        assert r.status_code == 200 and r.json()["history_source"] == "store" and r.json()["history_size"] == 40
        assert took < 1.0, took  # was 6-7.6 s for 100k rows on ML-100K
        page = c.get("/users/heavy/history", params={"limit": 5, "offset": 10}).json()
        assert page["total"] == 100_000 and [h["timestamp"] for h in page["history"]] == [
            99_985.0, 99_986.0, 99_987.0, 99_988.0, 99_989.0]  # fmt: skip


# ============================================================== 4. forgetting is complete
def test_forget_erases_the_db_and_wal_and_a_fresh_db_never_reseeds(model_dir, own_model, tmp_path):
    from lucidrec.recommender import Recommender

    rec = Recommender.load(model_dir, load_encoder=False)
    seeded = next(u for u in rec._known_users_with_history() if len(rec._known_history(u)) >= 3)
    db = tmp_path / "f.db"
    marker = "zq-forget-me-0042"
    with make_client(own_model, db) as c:
        for n in range(50):
            r = c.post("/feedback", json={"user": marker, "item": str(rec.item_ids[n % 20]), "timestamp": 10 + n},
                       headers=WRITE)  # fmt: skip
            assert r.status_code == 201
        c.post("/feedback", json={"user": seeded, "item": str(rec.item_ids[0])}, headers=WRITE)
        for user in (marker, seeded):
            r = c.delete(f"/users/{user}", headers=WRITE)
            assert r.status_code == 200, r.text
            assert r.json()["wal_checkpointed"] and r.json()["model_folder_tombstone"]
        # While the server runs: no copy of the rows in the database file or its (truncated) WAL.
        wal = Path(str(db) + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        for path in (db, wal):
            if path.exists():
                raw = path.read_bytes()
                assert marker.encode() not in raw, path
        assert c.post("/recommend", json={"user": seeded}).status_code == 404
    tomb = own_model / tombstones.FILE_NAME
    assert stat.S_IMODE(tomb.stat().st_mode) == 0o600
    assert marker not in tomb.read_text() and tombstones.digest(marker) in tomb.read_text()
    # A fresh database over the same model folder does not bring the forgotten seeded user back.
    with make_client(own_model, tmp_path / "fresh.db") as c:
        assert c.get("/users/" + seeded + "/history").status_code == 404
        assert c.post("/recommend", json={"user": seeded}).status_code == 404
        n_fresh = c.get("/health", headers=WRITE).json()["feedback_rows"]
    assert n_fresh == sum(len(rec._known_history(u)) for u in rec._known_users_with_history()) - len(
        rec._known_history(seeded)
    )


def test_store_tombstones_also_stop_reseeding_without_the_folder_file(tmp_path):
    store = FeedbackStore(tmp_path / "a.db")
    store.add("gone", "1", "liked", None, 1.0)
    assert store.delete_user("gone")[0] == 1 and tombstones.digest("gone") in store.tombstone_digests()
    assert store.seed([("gone", "1", "liked", None, 1.0), ("kept", "2", "liked", None, 2.0)], origin="t") == 1
    assert store.history("gone") == [] and len(store.history("kept")) == 1


# ============================================================== 5. keyed reads, throttled guessing
def test_reads_of_personal_data_need_a_key_by_default(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", public_reads=False) as c:
        for path in ("/users", "/users/u5/history"):
            r = c.get(path)
            assert r.status_code == 401 and r.json()["field"] == "authorization" and "Fix:" in r.json()["detail"]
            assert c.get(path, headers=WRITE).status_code == 200
        assert c.post("/recommend", json={"user": "u5"}).status_code == 401
        assert c.post("/recommend", json={"user": "u5"}, headers=WRITE).status_code == 200
        assert c.post("/recommend", json={"query": "a comedy"}).status_code == 200  # no personal data
        assert c.get("/health", headers=WRITE).json()["public_reads"] is False
    with make_client(model_dir, tmp_path / "f.db", public_reads=True) as c:
        assert c.get("/users").status_code == 200 and c.get("/users/u5/history").status_code == 200


def test_failed_keys_and_anonymous_requests_are_throttled_per_client(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", public_reads=False, auth_fail_rate=0.1, auth_fail_burst=5,
                     anon_rate_limit=0.1, anon_rate_burst=3) as c:  # fmt: skip
        bad = {"X-API-Key": "guess-0123456789abcdef"}
        codes = [c.get("/users", headers=bad).status_code for _ in range(8)]
        assert codes == [401] * 5 + [429] * 3
        r = c.get("/users", headers=bad)
        assert int(r.headers["Retry-After"]) >= 1 and "failed key checks" in r.json()["detail"]
        assert "guess-0123" not in r.text
        assert c.get("/users", headers=WRITE).status_code == 200  # a valid key is not locked out
        anon = [c.get("/items/100").status_code for _ in range(4)]
        assert anon == [200, 200, 200, 429]
        assert c.get("/items/100", headers=WRITE).status_code == 200


def test_rate_limiter_memory_is_bounded_for_made_up_clients():
    from lucidrec.service.ratelimit import RateLimiter

    now = [0.0]
    rl = RateLimiter(1.0, burst=2, clock=lambda: now[0], max_keys=100)
    for i in range(10_000):
        rl.acquire(f"client-{i}")
        now[0] += 0.001
    assert len(rl._buckets) <= 101
    rl.acquire("steady")
    assert rl.acquire("steady") == 0.0 and rl.acquire("steady") > 0  # limiting still works


# ============================================================== 7. durable acknowledged writes
def test_writes_are_fsynced_before_they_are_acknowledged(tmp_path):
    store = FeedbackStore(tmp_path / "a.db")
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._conn().execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert FeedbackStore(tmp_path / "b.db", synchronous="NORMAL")._conn().execute("PRAGMA synchronous").fetchone()[
        0] == 1  # fmt: skip
    with pytest.raises(Exception, match="FULL or NORMAL"):
        FeedbackStore(tmp_path / "c.db", synchronous="OFF")


def test_concurrent_feedback_is_group_committed_and_every_row_is_stored(tmp_path):
    import asyncio

    from lucidrec.service.writer import BatchWriter

    store = FeedbackStore(tmp_path / "a.db")
    batches = []
    real = store.add_batch
    store.add_batch = lambda rows: batches.append(len(rows)) or real(rows)
    writer = BatchWriter(store, max_pending=1000)

    async def many():
        return await asyncio.gather(*(writer.add(f"u{i % 7}", str(i), "liked", None, float(i)) for i in range(300)))

    results = asyncio.run(many())
    writer.close()
    ids = [r[0] for r in results]
    assert len(set(ids)) == 300 and store.ids_present(ids) == 300 and sum(batches) == 300
    assert len(batches) < 300  # writes waiting together shared a commit (and its fsync)
    assert max(n for _, n in results) == len(store.history("u0", limit=None))


# ============================================================== 9. hostile inputs
def test_strict_types_bounded_timestamps_and_nested_errors(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        for body, field in [
            ({"user": "u", "item": "100", "event": "rated", "rating": True}, "rating"),
            ({"user": "u", "item": "100", "event": "rated", "rating": "5"}, "rating"),
            ({"user": "u", "item": "100", "timestamp": 1e308}, "timestamp"),
            ({"user": "u", "item": "100", "timestamp": time.time() + 3 * 86400}, "timestamp"),
            ({"user": "u", "item": "100", "timestamp": -1}, "timestamp"),
            ({"user": "u", "item": "100", "timestamp": True}, "timestamp"),
        ]:
            r = c.post("/feedback", json=body, headers=WRITE)
            assert r.status_code == 422 and r.json()["field"] == field and "Fix:" in r.json()["detail"], (body, r.text)
        soon = {"user": "u", "item": "100", "event": "rated", "rating": 5, "timestamp": time.time() + 3600}
        assert c.post("/feedback", json=soon, headers=WRITE).status_code == 201  # clock skew is fine
        r = c.post("/recommend", json={"history": [{"item": "100", "rating": True}]})
        assert r.status_code == 422 and r.json()["field"] == "history[0].rating"
        r = c.post("/recommend", json={"filters": {"exclude": [[["100"]]]}, "query": "x"})
        assert r.status_code == 422 and r.json()["field"] == "filters.exclude[0]" and "Fix:" in r.json()["detail"]
        deep = b"[" * 100_000 + b"]" * 100_000
        r = c.post("/recommend", content=deep[:200_000], headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["field"] and "Fix:" in r.json()["detail"]
        r = c.get("/nowhere")
        assert r.status_code == 404 and r.json()["field"] == "path" and "Fix:" in r.json()["detail"]


def test_chunked_body_over_the_limit_is_413(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", max_body=10_000) as c:

        def chunks():
            yield b'{"query": "'
            for _ in range(50):
                yield b"x" * 1000
            yield b'"}'

        r = c.post("/recommend", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body"

        def small():
            yield b'{"query": "a funny'
            yield b' comedy", "k": 3}'

        r = c.post("/recommend", content=small(), headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and len(r.json()["items"]) == 3


def test_key_in_the_url_is_refused_and_db_files_are_private(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        r = c.get("/users", params={"api_key": KEY})
        assert r.status_code == 400 and r.json()["field"] == "api_key" and KEY not in r.text
        assert "header" in r.json()["detail"]
        c.post("/feedback", json={"user": "u", "item": "100"}, headers=WRITE)
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(tmp_path / "f.db") + suffix)
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_saved_interactions_are_private(model_dir):
    assert stat.S_IMODE((model_dir / "interactions.npz").stat().st_mode) == 0o600


def test_serve_refuses_contradicting_read_options(model_dir):
    out = subprocess.run([sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(model_dir), "--public-reads",
                          "--require-read-keys"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "contradict" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_served_access_log_has_no_ids_or_keys(model_dir, own_model, tmp_path):
    """The real `lucidrec serve`: the access log names route templates, never ids or query strings."""
    port = _free_port()
    env = {**os.environ, "LUCIDREC_API_KEYS": KEY}
    cmd = [sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(own_model), "--db", str(tmp_path / "s.db"),
           "--port", str(port), "--log-level", "info"]  # fmt: skip
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(base + "/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            user = "zq-logged-user-77"
            assert _http("POST", base + "/feedback", {"user": user, "item": "100"}, {"X-API-Key": KEY})[0] == 201
            assert _http("GET", base + f"/users/{user}/history")[0] == 401  # keyed by default
            assert _http("GET", base + f"/users/{user}/history", headers={"X-API-Key": KEY})[0] == 200
            assert _http("GET", base + f"/users/{user}/history?api_key={KEY}")[0] == 400
            assert _http("DELETE", base + f"/users/{user}", headers={"X-API-Key": KEY})[0] == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert '"DELETE /users/{user_id:path}" 200' in text and '"GET /users/{user_id:path}/history" 401' in text
    assert user not in text and KEY not in text and "api_key" not in text
