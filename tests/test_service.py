"""The HTTP service: endpoints, live feedback, forgetting users, validation, keys, rate limit, metrics.

The model is a tiny one trained once per test session on generated data (with user attributes, to prove
they never reach a reason); each test that writes gets a fresh SQLite database.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_frames

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lucidrec.errors import ConfigError  # noqa: E402
from lucidrec.service.app import ServiceSettings, create_app  # noqa: E402
from lucidrec.service.auth import KeyRing, load_api_keys, presented_key  # noqa: E402
from lucidrec.service.engine import scrub_sensitive  # noqa: E402
from lucidrec.service.ratelimit import RateLimiter  # noqa: E402

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"
WRITE = {"Authorization": f"Bearer {KEY}"}
# Distinctive user attribute values: if any reached a reason, the response text would contain them.
SENSITIVE_VALUES = ("Zoccupationz", "Z90210Z", "Zgenderz")


def tiny_service_model(tmp_path_factory) -> Path:
    """Train (once per session) and save a tiny model on generated data with user attributes."""
    import lucidrec.data
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    out = tmp_path_factory.getbasetemp() / "service-model"
    if (out / "config.json").exists():
        return out
    interactions, items = make_tiny_frames()
    users = pd.DataFrame(
        {
            "user": sorted(interactions["user"].unique()),
            "age": 33,
            "gender": SENSITIVE_VALUES[2],
            "occupation": SENSITIVE_VALUES[0],
            "zip_code": SENSITIVE_VALUES[1],
        }
    )
    ds = lucidrec.data.from_dataframes(interactions, items, users, name="tiny")
    cache = tmp_path_factory.getbasetemp() / "service-cache"
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=str(cache)).fit(ds, progress=False)
    rec.save(out)
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


@pytest.fixture(scope="module")
def known(model_dir):
    """The model's known histories: user -> list of item ids, oldest first (from interactions.npz)."""
    from lucidrec.recommender import Recommender

    rec = Recommender.load(model_dir, load_encoder=False)
    return rec, {u: [str(rec.item_ids[h.item]) for h in rec._known_history(u)] for u in rec._known_users_with_history()}


def make_client(model_dir: Path, db: Path, **kw) -> TestClient:
    kw.setdefault("api_keys", [KEY, OTHER_KEY])
    kw.setdefault("rate_limit", 0)
    # Most tests exercise behaviour, not access control: reads open, no per-client throttle. The keyed
    # default and the throttles have their own tests (test_service_hardening.py).
    kw.setdefault("public_reads", True)
    kw.setdefault("anon_rate_limit", 0)
    return TestClient(create_app(ServiceSettings(model_dir=model_dir, db_path=db, **kw)))


def own_model_dir(model_dir: Path, tmp_path: Path) -> Path:
    """The session model's files linked into a folder of this test's own: a DELETE writes a tombstone
    into the served folder, which must not leak into other tests' databases."""
    own = tmp_path / "model"
    own.mkdir()
    for f in model_dir.iterdir():
        (own / f.name).symlink_to(f.resolve(), target_is_directory=f.is_dir())
    return own


@pytest.fixture
def client(model_dir, tmp_path):
    with make_client(own_model_dir(model_dir, tmp_path), tmp_path / "feedback.db") as c:
        yield c


@pytest.fixture(scope="module")
def ro_client(model_dir, tmp_path_factory):
    """A shared client for tests that only read."""
    with make_client(model_dir, tmp_path_factory.mktemp("ro") / "feedback.db") as c:
        yield c


def _busy_user(known_users: dict, n: int = 5) -> str:
    return next(u for u, items in sorted(known_users.items()) if len(items) >= n)


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [it["item_id"] for it in resp.json()["items"]]


# ============================================================== recommend from the store
def test_known_user_history_comes_from_the_seeded_store(ro_client, known):
    rec, users = known
    user = _busy_user(users)
    r = ro_client.post("/recommend", json={"user": user, "k": 5})
    body = r.json()
    assert r.status_code == 200 and body["history_source"] == "store"
    assert body["history_size"] == len(users[user])
    # Same ranking as the Python API given the same history, and seen items excluded.
    py = rec.recommend(user=user, k=5)
    assert _ids(r) == [it["item_id"] for it in py["items"]]
    assert not set(_ids(r)) & set(users[user])
    hist = ro_client.get(f"/users/{user}/history").json()
    assert [h["item"] for h in hist["history"]] == users[user]


def test_reasons_evidence_and_languages(ro_client, known):
    _, users = known
    user = _busy_user(users)
    for lang in ("en", "zh"):
        items = ro_client.post("/recommend", json={"user": user, "k": 3, "lang": lang}).json()["items"]
        for it in items:
            assert it["reason"] and it["evidence"]
            total = sum(e["contribution"] for e in it["evidence"] if e.get("contribution") is not None)
            assert total == pytest.approx(it["score"], abs=1e-3)
        if lang == "zh":
            assert any("\u4e00" <= ch <= "\u9fff" for ch in items[0]["reason"])
    q = ro_client.post("/recommend", json={"query": "something with spaceships and lasers", "k": 3}).json()
    assert q["history_source"] == "none" and any(e["kind"] == "query" for e in q["items"][0]["evidence"])


def test_filters_exclude_genres_years_and_include_seen(ro_client, known):
    rec, users = known
    user = _busy_user(users)
    base = _ids(ro_client.post("/recommend", json={"user": user, "k": 5, "explain": False}))
    r = ro_client.post("/recommend", json={"user": user, "k": 5, "filters": {"exclude": base[:2]}})
    assert not set(_ids(r)) & set(base[:2])
    genre = rec.categories[0][0]
    r = ro_client.post("/recommend", json={"user": user, "k": 5, "filters": {"genres": [genre.lower()]}})
    for iid in _ids(r):
        assert genre in rec.categories[rec.item_index[iid]]
    r = ro_client.post("/recommend", json={"user": user, "k": 5, "filters": {"year_min": 1990, "year_max": 1999}})
    for iid in _ids(r):
        assert 1990 <= rec.years[rec.item_index[iid]] <= 1999
    r = ro_client.post("/recommend", json={"user": user, "k": 40, "filters": {"include_seen": True}})
    assert set(users[user]) <= set(_ids(r))


# ============================================================== live feedback and forgetting
def test_feedback_counts_on_the_very_next_request(client, known):
    rec, users = known
    user = _busy_user(users)
    before = client.post("/recommend", json={"user": user, "k": 5}).json()
    liked = before["items"][0]["item_id"]
    r = client.post("/feedback", json={"user": user, "item": liked, "event": "liked"}, headers=WRITE)
    assert r.status_code == 201 and r.json()["history_size"] == before["history_size"] + 1
    after = client.post("/recommend", json={"user": user, "k": 5}).json()
    assert after["history_size"] == before["history_size"] + 1
    assert liked not in [it["item_id"] for it in after["items"]]
    # Exactly what the Python API gives for the stored history (with its ratings: a rating-aware model
    # weighs items rated below the user's mean 0) plus the new, unrated item, last.
    stored = [(str(rec.item_ids[h.item]), h.rating) for h in rec._known_history(user)]
    py = rec.recommend(history=[*stored, (liked, None)], k=5)
    assert [it["item_id"] for it in after["items"]] == [it["item_id"] for it in py["items"]]
    hist = client.get(f"/users/{user}/history").json()["history"]
    assert hist[-1]["item"] == liked and hist[-1]["event"] == "liked"


def test_a_new_user_is_built_from_feedback_alone(client, known):
    rec, _ = known
    assert client.post("/recommend", json={"user": "newcomer"}).status_code == 404
    items = [str(i) for i in rec.item_ids[:3]]
    for n, iid in enumerate(items):
        r = client.post("/feedback", json={"user": "newcomer", "item": iid, "event": "rated", "rating": 5,
                                           "timestamp": 1000 + n}, headers=WRITE)  # fmt: skip
        assert r.status_code == 201, r.text
    got = client.post("/recommend", json={"user": "newcomer", "k": 5}).json()
    py = rec.recommend(history=[(i, 5.0) for i in items], k=5)
    assert [it["item_id"] for it in got["items"]] == [it["item_id"] for it in py["items"]]
    # Feedback with an older timestamp goes into the past: history order follows time, not arrival.
    client.post("/feedback", json={"user": "newcomer", "item": str(rec.item_ids[5]), "timestamp": 1}, headers=WRITE)
    hist = client.get("/users/newcomer/history").json()["history"]
    assert hist[0]["item"] == str(rec.item_ids[5])


def test_delete_forgets_every_row_and_the_user_becomes_a_stranger(client, known, tmp_path):
    _, users = known
    user = _busy_user(users)
    client.post("/feedback", json={"user": user, "item": users[user][0]}, headers=WRITE)
    q = "a funny comedy"
    stranger = _ids(client.post("/recommend", json={"query": q, "k": 5}))
    assert _ids(client.post("/recommend", json={"user": user, "query": q, "k": 5})) != stranger
    assert client.delete(f"/users/{user}").status_code == 401  # writes need a key
    r = client.delete(f"/users/{user}", headers=WRITE)
    assert r.status_code == 200 and r.json()["deleted_rows"] == len(users[user]) + 1
    with sqlite3.connect(tmp_path / "feedback.db") as db:
        assert db.execute("SELECT COUNT(*) FROM feedback WHERE user = ?", (user,)).fetchone()[0] == 0
    assert client.post("/recommend", json={"user": user}).status_code == 404
    assert client.get(f"/users/{user}/history").status_code == 404
    got = client.post("/recommend", json={"user": user, "query": q, "k": 5}).json()
    assert got["history_size"] == 0 and [it["item_id"] for it in got["items"]] == stranger
    # Forgetting is idempotent (issue 26, item 3): a repeat answers 200, with nothing left to erase.
    again = client.delete(f"/users/{user}", headers=WRITE)
    assert again.status_code == 200 and again.json()["deleted_rows"] == 0 and again.json()["already_forgotten"]
    assert client.delete("/users/never-known-zq", headers=WRITE).status_code == 404


def test_store_is_seeded_once_so_forgotten_users_stay_forgotten(model_dir, known, tmp_path):
    _, users = known
    model_dir = own_model_dir(model_dir, tmp_path)
    user = _busy_user(users)
    db = tmp_path / "feedback.db"
    with make_client(model_dir, db) as c:
        n_seed = c.get("/health", headers=WRITE).json()["feedback_rows"]
        assert n_seed == sum(len(v) for v in users.values())
        c.delete(f"/users/{user}", headers=WRITE)
    with make_client(model_dir, db) as c:  # a restart on the same database
        assert c.get("/health", headers=WRITE).json()["feedback_rows"] == n_seed - len(users[user])
        assert c.post("/recommend", json={"user": user}).status_code == 404


def test_lazy_model_load_seeds_on_first_use(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", preload=False) as c:
        assert c.get("/health").json()["model_loaded"] is False
        assert c.get("/items/100").status_code == 200
        h = c.get("/health", headers=WRITE).json()
        assert h["model_loaded"] is True and h["feedback_rows"] > 0


# ============================================================== validation: every bad input is a clear 4xx
BAD_REQUESTS = [
    ({"user": "u5", "k": 0}, 422, "k"),
    ({"user": "u5", "k": 1001}, 422, "k"),
    ({"user": "u5", "k": "5"}, 422, "k"),
    ({"user": "u5", "k": 2.5}, 422, "k"),
    ({"user": "u5", "explain": "yes"}, 422, "explain"),
    ({"user": "u5", "lang": "fr"}, 422, "lang"),
    ({"user": "u5", "colour": "red"}, 422, "colour"),
    ({"user": ""}, 422, "user"),
    ({"user": "x" * 129}, 422, "user"),
    ({"query": "q" * 2001}, 422, "query"),
    ({"query": 5}, 422, "query"),
    ({"history": [{"item": "100", "rating": "high"}]}, 422, "history[0].rating"),
    ({"history": [{"item": "100", "rating": 9}]}, 422, "history[0].rating"),
    ({"history": [{"item": "100"}, {"item": "nope"}]}, 404, "history[1].item"),
    ({"history": "100,101"}, 422, "history"),
    ({"user": "nobody"}, 404, "user"),
    ({"query": "x", "filters": {"exclude": ["nope"]}}, 404, "filters.exclude[0]"),
    ({"query": "x", "filters": {"genres": ["Western-noir"]}}, 422, "filters.genres"),
    ({"query": "x", "filters": {"year_min": 2000, "year_max": 1990}}, 422, "filters.year_max"),
    ([1, 2], 422, "body"),
]


@pytest.mark.parametrize("body,status,field", BAD_REQUESTS)
def test_bad_recommend_requests_name_the_field(ro_client, body, status, field):
    r = ro_client.post("/recommend", json=body)
    assert r.status_code == status, r.text
    out = r.json()
    assert out["field"] == field and field in out["detail"] and "Fix:" in out["detail"]


def test_bad_json_oversized_body_and_bad_feedback(ro_client):
    r = ro_client.post("/recommend", content=b'{"user": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body" and "JSON" in r.json()["detail"]
    big = json.dumps({"history": [{"item": "100"}] * 20000}).encode()
    r = ro_client.post("/recommend", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    for body, status, field in [
        ({"user": "u5", "item": "nope"}, 404, "item"),
        ({"user": "u5", "item": "100", "event": "rated"}, 422, "rating"),
        ({"user": "u5", "item": "100", "event": "bought"}, 422, "event"),
        ({"user": "u5", "item": "100", "rating": -1}, 422, "rating"),
        ({"user": "u5", "item": "100", "timestamp": "yesterday"}, 422, "timestamp"),
        ({"item": "100"}, 422, "user"),
    ]:
        r = ro_client.post("/feedback", json=body, headers=WRITE)
        assert r.status_code == status and r.json()["field"] == field, (body, r.text)
    assert ro_client.get("/items", params={"search": "s" * 201}).json()["field"] == "search"
    assert ro_client.get("/items/nope").status_code == 404
    assert ro_client.get("/users/" + "u" * 129 + "/history").status_code == 422


def test_items_endpoints(ro_client, known):
    rec, _ = known
    it = ro_client.get("/items/100").json()
    assert it["title"] == rec.titles[rec.item_index["100"]] and it["genres"] == list(rec.categories[0])
    found = ro_client.get("/items", params={"search": "item 10", "limit": 50}).json()
    assert found["count"] >= 1 and all("item 10" in i["title"].lower() or i["item_id"] == "item 10"
                                       for i in found["items"])  # fmt: skip
    assert ro_client.get("/items", params={"search": "101"}).json()["items"][0]["item_id"] == "101"
    users = ro_client.get("/users", params={"limit": 3}).json()
    assert len(users) == 3 and users[0]["events"] >= users[-1]["events"]


# ============================================================== keys, rate limit, privacy
def test_api_keys_bearer_header_wrong_key_and_no_leak(model_dir, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with make_client(model_dir, tmp_path / "f.db") as c:
        fb = {"user": "u5", "item": "100"}
        assert c.post("/feedback", json=fb).status_code == 401
        bad = c.post("/feedback", json=fb, headers={"Authorization": "Bearer wrong-key-0123456789"})
        assert bad.status_code == 401 and "wrong-key" not in bad.text
        assert c.post("/feedback", json=fb, headers={"X-API-Key": OTHER_KEY}).status_code == 201
        assert c.post("/feedback", json=fb, headers=WRITE).status_code == 201
        assert c.post("/recommend", json={"user": "u5"}).status_code == 200  # --public-reads
        metrics = c.get("/metrics").text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged and OTHER_KEY not in logged and KEY not in metrics
    with make_client(model_dir, tmp_path / "f.db", public_reads=False) as c:  # the default
        assert c.post("/recommend", json={"user": "u5"}).status_code == 401
        assert c.get("/items/100").status_code == 200  # the catalog is not personal data
        assert c.post("/recommend", json={"user": "u5"}, headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/health").status_code == 200


def test_no_configured_keys_means_no_writes(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", api_keys=[]) as c:
        r = c.post("/feedback", json={"user": "u5", "item": "100"}, headers=WRITE)
        assert r.status_code == 401


def test_rate_limit_answers_429_per_key(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db", rate_limit=0.5, rate_burst=2) as c:
        fb = {"user": "u5", "item": "100"}
        codes = [c.post("/feedback", json=fb, headers=WRITE).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        r = c.post("/feedback", json=fb, headers=WRITE)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["detail"]
        assert c.post("/feedback", json=fb, headers={"X-API-Key": OTHER_KEY}).status_code == 201  # other key


def test_rate_limiter_refills_over_time():
    now = [0.0]
    rl = RateLimiter(2.0, burst=2, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert rl.acquire("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert rl.acquire("a") == 0.0
    assert RateLimiter(0).acquire("a") == 0.0
    with pytest.raises(ConfigError):
        RateLimiter(-1)


def test_key_loading_and_matching(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text(f"# ops keys\n{KEY}\n\n{OTHER_KEY}  # ci\n")
    assert load_api_keys(f, environ={"LUCIDREC_API_KEYS": f" {KEY} ,,"}) == [KEY, OTHER_KEY]
    with pytest.raises(ConfigError, match="shorter"):
        load_api_keys(environ={"LUCIDREC_API_KEYS": "short"})
    with pytest.raises(ConfigError, match="no such file"):
        load_api_keys(tmp_path / "missing.txt", environ={})
    ring = KeyRing([KEY])
    assert ring.match(KEY) and not ring.match(KEY[:-1]) and not ring.match(None) and not KeyRing([]).match(KEY)
    assert presented_key({"authorization": f"Bearer {KEY}"}) == KEY
    assert presented_key({"x-api-key": KEY}) == KEY and presented_key({"authorization": "Basic abc"}) is None


def test_sensitive_user_attributes_never_reach_reasons(ro_client, known):
    _, users = known
    for user in list(users)[:10]:
        text = ro_client.post("/recommend", json={"user": user, "k": 5, "counterfactual": True}).text
        assert not any(v.lower() in text.lower() for v in SENSITIVE_VALUES)
    # The guard also holds if a future model cites a user attribute: that evidence goes, the reason is redone.
    result = {"items": [{"title": "Item 1", "reason": "because you are 33 and a Zoccupationz", "evidence": [
        {"kind": "attribute", "name": "occupation", "value": "Zoccupationz"},
        {"kind": "popularity", "contribution": 0.5}]}]}  # fmt: skip
    scrub_sensitive(result, "en")
    it = result["items"][0]
    assert [e["kind"] for e in it["evidence"]] == ["popularity"] and "Zoccupationz" not in it["reason"]


def test_extra_result_keys_pass_through(model_dir, tmp_path):
    """parsed_query / constraints_met (issue 5) reach the client whatever recommend() adds."""
    with make_client(model_dir, tmp_path / "f.db") as c:
        rec = c.app.state.holder.get()
        original = rec.recommend

        def with_parse(**kw):
            out = original(**kw)
            out["parsed_query"] = {"genres": ["Comedy"], "year": [1990, 1999], "text": "fun"}
            for it in out["items"]:
                it["constraints_met"] = ["genre Comedy"]
            return out

        rec.recommend = with_parse
        body = c.post("/recommend", json={"query": "a 90s comedy", "k": 2}).json()
    assert body["parsed_query"]["year"] == [1990, 1999] and body["items"][0]["constraints_met"] == ["genre Comedy"]


def test_metrics_health_docs_and_page(ro_client):
    ro_client.post("/recommend", json={"user": "u5", "k": 2})
    ro_client.post("/recommend", json={"user": "u5", "k": 0})
    text = ro_client.get("/metrics").text
    assert 'lucidrec_http_requests_total{method="POST",route="/recommend",status="200"}' in text
    assert 'lucidrec_http_requests_total{method="POST",route="/recommend",status="422"}' in text
    assert 'lucidrec_http_request_duration_seconds_bucket{le="0.05",method="POST",route="/recommend"}' in text
    assert ro_client.get("/health").json()["status"] == "ok"
    assert ro_client.get("/docs").status_code == 200
    paths = ro_client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/feedback", "/users/{user_id}", "/items", "/health"} <= set(paths)
    page = ro_client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[1]
    assert ro_client.get("/static/app.js").status_code == 200 and ro_client.get("/static/style.css").status_code == 200


# ============================================================== serving without torch, and the CLI
def test_serving_never_imports_torch(model_dir, tmp_path):
    code = f"""
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from lucidrec.service.app import ServiceSettings, create_app
app = create_app(ServiceSettings(model_dir=Path({str(model_dir)!r}), db_path=Path({str(tmp_path / "t.db")!r}),
                                public_reads=True))
with TestClient(app) as c:
    assert c.post("/recommend", json={{"query": "a scary film", "k": 3}}).status_code == 200
    assert c.post("/recommend", json={{"user": "u5", "k": 3}}).status_code == 200
assert "torch" not in sys.modules, "serving imported torch"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_serve_cli_end_to_end_with_demo_key(model_dir, tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LUCIDREC_API_KEYS": ""}
    cmd = [sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(model_dir), "--db", str(tmp_path / "c.db"),
           "--port", str(port), "--demo-key", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        key = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert key.startswith("demo-")
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(base + "/feedback", data=json.dumps({"user": "cli", "item": "100"}).encode(),
                                     headers={"X-API-Key": key, "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    bad = subprocess.run([sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "not a model folder" in " ".join((bad.stdout + bad.stderr).split())


def test_scores_stay_finite_for_odd_histories(ro_client):
    r = ro_client.post("/recommend", json={"history": [{"item": "100", "rating": 0}, {"item": "100", "rating": 5}]})
    assert r.status_code == 200 and all(np.isfinite(it["score"]) for it in r.json()["items"])
