"""Issue 26 (trust), one regression test per audit finding, each reproducing the audit's case: HTTP against
the app (a real uvicorn server where connections or headers matter), the CLI as a subprocess, real SQLite
files and real model folders.

1 ids holding '/'           2 forgetting at every door    3 an interrupted forget completes on retry
4 'disliked' on a product   5 data printed as data        6 full disk / vanished db: JSON 503, /health
7 read and write keys       8 security headers, local docs 9 bad CLI input     10 smaller findings
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_frames

pytest.importorskip("fastapi")
from test_service import KEY, make_client, own_model_dir, tiny_service_model  # noqa: E402
from test_service_hardening import _free_port, _http, live_server  # noqa: E402

from lucidrec import forgetting
from lucidrec.io import model_check  # noqa: E402
from lucidrec.recommender import Recommender  # noqa: E402
from lucidrec.service.app import ServiceSettings, create_app  # noqa: E402
from lucidrec.service.store import FeedbackStore  # noqa: E402

WRITE = {"Authorization": f"Bearer {KEY}"}
READ_KEY = "read-only-key-0123456789abcdef"
READ = {"Authorization": f"Bearer {READ_KEY}"}
SRC = str(Path(__file__).parents[1] / "src")

# Item ids and titles of the hostile implicit catalogue (items 4, 5, 9 and 10).
ODD_IDS = {100: "a,b", 101: "c:d", 102: "e f", 103: "team/x"}
HOSTILE_TITLES = {
    104: "Broken [/] markup",
    105: "[link=http://evil.example]Free[/link]",
    106: "[bold red]Loud[/bold red]",
    107: "Title\x1b]0;pwned\x07 set",
}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


@pytest.fixture(scope="session")
def product_model(tmp_path_factory) -> Path:
    """A tiny implicit-feedback catalogue (no ratings: every interaction is the catalogue's event) whose ids
    hold ',' ':' ' ' '/' and whose titles hold rich markup and a terminal escape."""
    import lucidrec.data
    from lucidrec.models.config import HybridConfig

    out = tmp_path_factory.getbasetemp() / "product-model"
    if (out / "config.json").exists():
        return out
    inter, items = make_tiny_frames(seed=11)
    inter = inter.drop(columns=["rating"])
    rename = {k: v for k, v in ODD_IDS.items()}
    inter["item"] = inter["item"].map(lambda i: rename.get(int(i), str(i)))
    items["item"] = items["item"].map(lambda i: rename.get(int(i), str(i)))
    for i, title in HOSTILE_TITLES.items():
        items.loc[items["item"] == str(i), "title"] = title
    ds = lucidrec.data.from_dataframes(inter, items, name="products")
    assert not ds.has_ratings
    cache = tmp_path_factory.getbasetemp() / "product-cache"
    Recommender(HybridConfig(epochs=2, dim=8), cache_dir=str(cache)).fit(ds, progress=False).save(out)
    return out


def cli(*args, timeout: float = 300, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """`lucidrec ARGS` in a fresh process, stdout and stderr piped (not a terminal)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": SRC, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "lucidrec.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip


def assert_clean_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one 'error:' line holding every needle and a Fix, no traceback."""
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "Traceback" not in out and "Error:" not in out.replace("error:", ""), out
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("error:"))
    for n in needles:
        assert n in line, line
    assert "Fix:" in line, line


def quoted(user: str) -> str:
    return urllib.parse.quote(user, safe="")


def _known_user(model: Path, min_rows: int = 3) -> str:
    rec = Recommender.load(model, load_encoder=False)
    return next(u for u in rec._known_users_with_history() if len(rec._known_history(u)) >= min_rows)


# ============================================================== 1. ids holding '/' can be read and forgotten
@pytest.mark.parametrize("user", ["team/alice", "../../etc/passwd", "a/b/history", "50% off?#x", "trailing/"])
def test_every_id_feedback_accepts_can_be_read_and_forgotten_over_http(model_dir, tmp_path, user):
    with (
        make_client(own_model_dir(model_dir, tmp_path), tmp_path / "f.db", public_reads=False) as c,
        live_server(c.app) as base,
    ):
        assert _http("POST", base + "/feedback", {"user": user, "item": "100"}, WRITE)[0] == 201
        status, page, _ = _http("GET", base + f"/users/{quoted(user)}/history", headers=WRITE)
        assert status == 200 and page["user"] == user and page["total"] == 1
        status, body, _ = _http("DELETE", base + f"/users/{quoted(user)}", headers=WRITE)
        assert status == 200 and body["user"] == user and body["deleted_rows"] == 1, body
        assert _http("GET", base + f"/users/{quoted(user)}/history", headers=WRITE)[0] == 404


def test_a_slash_id_also_travels_unencoded_and_unpathable_ids_are_refused(model_dir, tmp_path):
    with make_client(own_model_dir(model_dir, tmp_path), tmp_path / "f.db") as c:
        assert c.post("/feedback", json={"user": "team/bob", "item": "100"}, headers=WRITE).status_code == 201
        assert c.get("/users/team/bob/history").json()["user"] == "team/bob"
        assert c.delete("/users/team/bob", headers=WRITE).json()["deleted_rows"] == 1
        for bad in (".", ".."):  # no URL path can carry these: refused at write time, naming the rule
            r = c.post("/feedback", json={"user": bad, "item": "100"}, headers=WRITE)
            assert r.status_code == 422 and r.json()["field"] == "user" and "Fix:" in r.json()["detail"]
        desc = c.get("/openapi.json").json()["info"]["description"]
        assert "team%2Falice" in desc and "`.` and `..`" in desc


def test_catalogue_ids_holding_slashes_commas_and_colons_can_be_looked_up(product_model, tmp_path):
    with make_client(product_model, tmp_path / "f.db") as c:
        for iid in ODD_IDS.values():
            r = c.get(f"/items/{quoted(iid)}")
            assert r.status_code == 200 and r.json()["item_id"] == iid, r.text
        r = c.post("/recommend", json={"history": [{"item": i} for i in ODD_IDS.values()], "k": 3})
        assert r.status_code == 200 and r.json()["history_size"] == len(ODD_IDS)


# ============================================================== 2. forgotten at every door of the model folder
def test_forgotten_over_http_is_forgotten_by_cli_recommend_batch_and_serve(model_dir, tmp_path):
    own = own_model_dir(model_dir, tmp_path)
    user = _known_user(own)
    with make_client(own, tmp_path / "f.db") as c:
        r = c.delete(f"/users/{quoted(user)}", headers=WRITE)
        assert r.status_code == 200 and r.json()["model_folder_tombstone"]
    # The CLI reads the same folder: the user is a stranger there too.
    assert_clean_error(cli("recommend", "--model", own, "--user", user, "--json"), user, "unknown")
    users = tmp_path / "users.parquet"
    other = next(u for u in Recommender.load(own, load_encoder=False)._known_users_with_history() if u != user)
    pd.DataFrame({"user_id": [user, other]}).to_parquet(users)
    p = cli("batch", "--model", own, "--users", users, "--out", tmp_path / "recs.parquet", "--k", "3", "--skip-unknown")
    assert p.returncode == 0, p.stderr
    assert set(pd.read_parquet(tmp_path / "recs.parquet")["user_id"]) == {other}
    # A server on a fresh database does not seed them.
    with make_client(own, tmp_path / "fresh.db") as c:
        assert c.get(f"/users/{quoted(user)}/history").status_code == 404


def test_lucidrec_forget_erases_the_db_rows_and_the_training_rows_and_keeps_the_folder_loadable(model_dir, tmp_path):
    own = own_model_dir(model_dir, tmp_path)
    user = _known_user(own)
    db = own / "feedback.db"  # serve's default place: forget finds it without --db
    with make_client(own, db) as c:
        assert c.post("/feedback", json={"user": user, "item": "100"}, headers=WRITE).status_code == 201
    p = cli("forget", user, "--model", own, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)["forgotten"][0]
    assert report["db_rows"] >= 4 and report["model_rows"] >= 3 and report["model_folder_tombstone"]
    with np.load(own / "interactions.npz") as z:
        assert user not in set(z["user"].astype(str))
    assert not (own / "interactions.npz").is_symlink()  # replaced, never written through the shared file
    model_check.verify_manifest(own, {"model"})  # the manifest agrees with the rewritten file
    assert user not in Recommender.load(own, load_encoder=False).known
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback WHERE user = ?", (user,)).fetchone()[0] == 0
    # Idempotent: a second run succeeds with nothing left.
    again = json.loads(cli("forget", user, "--model", own, "--json").stdout)["forgotten"][0]
    assert again["db_rows"] == 0 and again["model_rows"] == 0
    assert_clean_error(cli("forget", "--model", own), "no user to forget")


def test_train_leaves_out_users_forgotten_in_the_out_folder_and_in_a_forget_file(tmp_path):
    inter, _ = make_tiny_frames()
    data = tmp_path / "inter.csv"
    inter.to_csv(data, index=False)
    out = tmp_path / "model"
    out.mkdir()
    forgetting.append(out, ["u7"])  # forgotten while the old model served from this folder
    (tmp_path / "forget.txt").write_text("# users who asked\nu8\n" + forgetting.digest("u9") + "\n")
    p = cli("train", "--data", data, "--out", out, "--epochs", "1", "--dim", "8", "--quiet",
            "--forget-file", tmp_path / "forget.txt", timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "left out 3 forgotten user(s)" in p.stderr
    with np.load(out / "interactions.npz") as z:
        users = set(z["user"].astype(str))
    assert not users & {"u7", "u8", "u9"} and "u10" in users


# ============================================================== 3. an interrupted forget completes on retry
def test_a_forget_cut_after_the_db_step_is_completed_by_a_retry(model_dir, tmp_path):
    own = own_model_dir(model_dir, tmp_path)
    user = _known_user(own)
    db = tmp_path / "f.db"
    with make_client(own, db):
        pass  # seeded
    # The audit's interruption: the database step ran (rows gone, db tombstone), the folder's did not.
    store = FeedbackStore(db)
    assert store.delete_user(user)[0] >= 3
    store.close()
    assert forgetting.digest(user) not in forgetting.read(own)
    with make_client(own, db) as c:
        r = c.delete(f"/users/{quoted(user)}", headers=WRITE)
        assert r.status_code == 200, r.text
        assert r.json()["model_folder_tombstone"] and r.json()["already_forgotten"] and r.json()["deleted_rows"] == 0
    with make_client(own, tmp_path / "fresh.db") as c:  # the audit's fresh --db no longer serves them
        assert c.post("/recommend", json={"user": user}).status_code == 404


def test_a_forget_cut_after_the_tombstone_erases_the_rows_on_retry(model_dir, tmp_path):
    own = own_model_dir(model_dir, tmp_path)
    db = tmp_path / "f.db"
    with make_client(own, db) as c:
        assert c.post("/feedback", json={"user": "late", "item": "100"}, headers=WRITE).status_code == 201
        forgetting.append(own, ["late"])  # only the first step happened
        r = c.delete("/users/late", headers=WRITE)
        assert r.status_code == 200 and r.json()["deleted_rows"] == 1 and not r.json()["already_forgotten"]
    p = cli("forget", "late", "--db", db)  # the CLI door is idempotent too
    assert p.returncode == 0 and "0 stored rows erased" in p.stderr, p.stderr


# ============================================================== 4. a negative event never counts as support
def test_disliked_on_a_product_catalogue_never_raises_nor_is_cited(product_model, tmp_path):
    rec = Recommender.load(product_model, load_encoder=False)
    assert rec.implicit_event
    a, b = "110", "111"
    with make_client(product_model, tmp_path / "f.db") as c:
        for user, event in (("dis", "disliked"), ("lik", "liked")):
            for item in (a, b):
                assert (
                    c.post("/feedback", json={"user": user, "item": item, "event": event}, headers=WRITE).status_code
                    == 201
                )
        got = {u: c.post("/recommend", json={"user": u, "k": 5}).json() for u in ("dis", "lik")}
    titles = {str(rec.titles[rec.item_index[i]]) for i in (a, b)}
    assert [it["item_id"] for it in got["dis"]["items"]] != [it["item_id"] for it in got["lik"]["items"]]
    for it in got["dis"]["items"]:
        hist = [e for e in it["evidence"] if e["kind"] in ("history", "history_other")]
        assert all(abs(e.get("contribution", 0.0)) < 1e-6 for e in hist), it["evidence"]
        assert not any(t in it["reason"] for t in titles), it["reason"]
        assert rec.implicit_event not in it["reason"]
    assert any(e["kind"] == "history" for it in got["lik"]["items"] for e in it["evidence"])
    # The Python API: a negative event given inline is read the same way.
    py = rec.recommend(history=[(a, None, "disliked"), (b, None, "disliked")], k=5, explain=True)
    assert [it["item_id"] for it in py["items"]] == [it["item_id"] for it in got["dis"]["items"]]


# ============================================================== 5. data printed as data
def test_markup_and_escapes_in_titles_and_queries_print_as_text(product_model):
    hist = json.dumps(["104", "105", "106", "107"])
    p = cli("recommend", "--model", product_model, "--history", hist, "--include-seen", "--k", "40", "--explain",
            "--query", "[/] [bold]x[/bold]", env_extra={"FORCE_COLOR": "1", "COLUMNS": "400"})  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "MarkupError" not in out and "Traceback" not in out
    assert "[link=http://evil.example]Free[/link]" in p.stdout and "[bold red]Loud[/bold red]" in p.stdout
    assert "\x1b]8;" not in p.stdout  # no hyperlink escape: the link was never made
    assert "\x1b]0;" not in p.stdout and "\x07" not in p.stdout  # the title's own escape is gone
    assert "[/] [bold]x[/bold]" in p.stdout  # the query, in the table's title, as typed


def test_an_error_quoting_markup_prints_it_literally():
    p = cli("recommend", "--model", "/nonexistent/[bold]x[/] [link=evil.example]y", "--user", "1")
    assert_clean_error(p, "/nonexistent/[bold]x[/] [link=evil.example]y")


# ============================================================== 6. full disk, vanished db
def _limit_pages(monkeypatch, limit: dict) -> None:
    """Every store connection caps the file at limit['pages'] pages: SQLite's own SQLITE_FULL, exactly what a
    full disk gives, on a real file."""
    real = FeedbackStore._conn

    def capped(self):
        conn = real(self)
        conn.execute(f"PRAGMA max_page_count={limit['pages']}")
        return conn

    monkeypatch.setattr(FeedbackStore, "_conn", capped)


def test_a_full_disk_answers_json_503_naming_the_cause_and_health_says_so(model_dir, tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    limit = {"pages": 2**30}
    _limit_pages(monkeypatch, limit)
    with make_client(own_model_dir(model_dir, tmp_path), tmp_path / "f.db") as c, live_server(c.app) as base:
        store = c.app.state.store
        limit["pages"] = store._conn().execute("PRAGMA page_count").fetchone()[0]

        def post(n):
            body = {"user": f"filler-{n}", "item": "100", "timestamp": 1000 + n}
            return _http("POST", base + "/feedback", body, WRITE)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, range(300)))  # a connection reset would raise here
        statuses = [s for s, _, _ in results]
        assert set(statuses) <= {201, 503} and 503 in statuses
        full = next(b for s, b, _ in results if s == 503)
        assert "database or disk is full" in full["detail"] and "Fix: free disk space" in full["detail"]
        # /health reports the latest write's outcome; a write that fits into pages a failed one freed makes it
        # "ok" again (one CI run saw that order), so the check follows a write that failed. The disk stays full,
        # so one soon does.
        for n in range(100):
            statuses.append(post(1000 + n)[0])
            if statuses[-1] == 503:
                break
        assert statuses[-1] == 503
        status, health, _ = _http("GET", base + "/health")
        assert status == 503 and health["status"] == "degraded" and health["storage"] == "unavailable"
        assert "disk is full" in _http("GET", base + "/health", headers=WRITE)[1]["storage_error"]
        limit["pages"] = 2**30  # space again: the next write succeeds and health recovers
        assert post(10_000)[0] == 201
        assert _http("GET", base + "/health")[1]["status"] == "ok"
    stored = FeedbackStore(tmp_path / "f.db")
    acknowledged = sum(1 for s in statuses if s == 201) + 1
    assert stored.count(source="api") == acknowledged  # every 201 is stored, no 503 was
    # The log names the cause in one line: no traceback, no "cannot rollback" hiding it.
    assert "disk is full" in caplog.text and "cannot rollback" not in caplog.text
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]


def test_a_vanished_db_answers_json_503_and_health_says_so(model_dir, tmp_path):
    db = tmp_path / "f.db"
    with make_client(own_model_dir(model_dir, tmp_path), db) as c, live_server(c.app) as base:
        assert _http("POST", base + "/feedback", {"user": "x", "item": "100"}, WRITE)[0] == 201
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        status, body, _ = _http("POST", base + "/feedback", {"user": "x", "item": "101"}, WRITE)
        assert status == 503 and "was removed or replaced" in body["detail"] and "Fix:" in body["detail"]
        assert _http("DELETE", base + "/users/x", headers=WRITE)[0] == 503
        status, health, _ = _http("GET", base + "/health")
        assert status == 503 and health["status"] == "degraded"


# ============================================================== 7. read keys and write keys
def test_a_read_key_reads_users_but_cannot_write_or_forget(model_dir, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# kinds\nread: {READ_KEY}\nwrite: {KEY}\n")
    from lucidrec.service.auth import load_keys

    kinds = load_keys(keys, environ={})
    assert kinds == {READ_KEY: "read", KEY: "write"}
    settings = ServiceSettings(
        model_dir=own_model_dir(model_dir, tmp_path),
        db_path=tmp_path / "f.db",
        api_keys=[KEY],
        read_api_keys=[READ_KEY],
        rate_limit=0,
        anon_rate_limit=0,
    )
    app = create_app(settings)
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert c.get("/users", headers=READ).status_code == 200
        assert c.get("/users/u5/history", headers=READ).status_code == 200
        assert c.post("/recommend", json={"user": "u5"}, headers=READ).status_code == 200
        for r in (
            c.delete("/users/u5", headers=READ),
            c.post("/feedback", json={"user": "u5", "item": "100"}, headers=READ),
        ):
            assert r.status_code == 403 and r.json()["field"] == "authorization" and "write key" in r.json()["detail"]
        assert c.get("/users/u5/history", headers=READ).json()["total"] > 0  # nothing was erased
        assert c.delete("/users/u5", headers=WRITE).status_code == 200


def test_key_file_errors_name_the_line_and_the_fix(tmp_path):
    from lucidrec.errors import ConfigError
    from lucidrec.service.auth import load_keys

    bad = tmp_path / "keys.txt"
    bad.write_text(f"write: {KEY}\nadmin: {READ_KEY}\n")
    with pytest.raises(ConfigError, match=r"line 2: unknown key kind 'admin'.*Fix: 'read: KEY'"):
        load_keys(bad, environ={})
    assert load_keys(None, environ={"LUCIDREC_READ_KEYS": READ_KEY, "LUCIDREC_API_KEYS": KEY}) == {
        READ_KEY: "read", KEY: "write"}  # fmt: skip


# ============================================================== 8. headers and the docs' scripts
def test_security_headers_and_docs_without_third_party_scripts(model_dir, tmp_path):
    import re

    with make_client(model_dir, tmp_path / "f.db") as c:
        for path in ("/", "/docs", "/openapi.json", "/health", "/static/app.js"):
            h = c.get(path).headers
            assert "script-src 'self'" in h["content-security-policy"] and "frame-ancestors 'none'" in h[
                "content-security-policy"], path  # fmt: skip
            assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", path
        assert c.post("/recommend", json={"k": 0}).headers["x-frame-options"] == "DENY"  # errors too
        docs = c.get("/docs").text
        scripts = re.findall(r"<script[^>]*src=\"([^\"]+)\"", docs) + re.findall(r"href=\"([^\"]+\.css)\"", docs)
        assert scripts and all(s.startswith("/static/") for s in scripts), scripts
        assert "cdn" not in docs.lower() and c.get("/static/docs.js").status_code == 200
        assert c.get("/redoc").status_code == 404


# ============================================================== 9. bad CLI input
def test_history_ratings_outside_the_scale_are_refused(model_dir):
    assert_clean_error(cli("recommend", "--model", model_dir, "--history", "100:1e9"), "100:1e9", "outside 0..5")


def test_ids_with_commas_colons_spaces_and_slashes_can_be_named_in_history(product_model):
    hist = json.dumps(list(ODD_IDS.values()))
    p = cli("recommend", "--model", product_model, "--history", hist, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["history_size"] == 4
    p = cli("recommend", "--model", product_model, "--history", "c:d,e f", "--json")  # ':' then not a number
    assert_clean_error(p, "c:d", "JSON list")


def _split(data) -> subprocess.CompletedProcess:
    return cli("split", "--data", data, "--out", Path(data).parent / "split-out")


def test_ragged_and_foreign_separator_csv(tmp_path):
    inter, _ = make_tiny_frames()
    ragged = tmp_path / "ragged.csv"
    lines = inter.to_csv(index=False).splitlines()
    lines[5] += ",extra"
    ragged.write_text("\n".join(lines) + "\n")
    assert_clean_error(_split(ragged), "line 6", "header's 4 columns")
    for sep, name in ((";", "semi"), ("\t", "tab")):
        path = tmp_path / name / f"{name}.csv"
        path.parent.mkdir()
        inter.to_csv(path, index=False, sep=sep)
        p = _split(path)
        assert p.returncode == 0 and "rename" not in p.stderr, p.stderr


def _amazon(folder: Path, meta: dict, bom: bool = False) -> Path:
    folder.mkdir()
    inter = json.dumps({"u1": ["i1", "i2", "i3"], "u2": ["i2", "i3", "i1"], "u3": ["i3", "i1", "i2"]})
    (folder / "Shop.inter.json").write_text(("\ufeff" if bom else "") + inter, encoding="utf-8")
    (folder / "Shop.item.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_amazon_objects_in_text_fields_are_refused_and_a_bom_is_accepted(tmp_path):
    good = {i: {"title": f"Thing {i}", "brand": "Acme", "categories": "Shop, Tools"} for i in ("i1", "i2", "i3")}
    bad = {**good, "i2": {**good["i2"], "brand": {"a": 1}}}
    assert_clean_error(_split(_amazon(tmp_path / "bad", bad)), "item 'i2'", "'brand' is an object")
    p = _split(_amazon(tmp_path / "bom", good, bom=True))
    assert p.returncode == 0, p.stderr


def test_a_read_only_db_is_told_to_become_writable_not_replaced(tmp_path, monkeypatch):
    """The tests run as root, whom file modes do not stop: SQLite opens the real file read-only instead."""
    from lucidrec.errors import ConfigError
    from lucidrec.service import store as store_module

    db = tmp_path / "f.db"
    FeedbackStore(db).close()
    real = sqlite3.connect
    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))  # fmt: skip
    with pytest.raises(ConfigError) as e:
        FeedbackStore(db)
    msg = str(e.value)
    assert "read-only" in msg and "writable" in msg and "new file path" not in msg


# ============================================================== 10. the smaller findings
def test_x_forwarded_for_does_not_reset_the_failed_key_throttle(model_dir, tmp_path):
    """The real `lucidrec serve`: rotating X-Forwarded-For from one local client buys no fresh budget."""
    import time
    import urllib.request

    port = _free_port()
    env = {**os.environ, "LUCIDREC_API_KEYS": KEY, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(own_model_dir(model_dir, tmp_path)),
           "--db", str(tmp_path / "s.db"), "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        codes = [
            _http(
                "GET",
                base + "/users",
                headers={"X-API-Key": "wrong-key-0123456789abcdef", "X-Forwarded-For": f"10.0.{n // 250}.{n % 250}"},
            )[0]  # fmt: skip
            for n in range(25)
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert codes[0] == 401 and 429 in codes, codes


def test_trace_logging_is_refused():
    p = cli("serve", "--model", "/nonexistent", "--log-level", "trace")
    assert_clean_error(p, "--log-level trace", "raw request lines")


def test_trailing_slash_is_a_404_that_never_reflects_the_host(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        r = c.post("/recommend/", json={"query": "x"}, headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers and "evil.example" not in r.text


def test_health_shows_counts_and_keys_only_with_a_key(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        anon = c.get("/health").json()
        assert anon["status"] == "ok" and not {"feedback_rows", "write_keys_configured", "queued"} & set(anon)
        keyed = c.get("/health", headers=WRITE).json()
        assert keyed["feedback_rows"] > 0 and keyed["write_keys_configured"] == 2
        assert c.get("/health", headers={"X-API-Key": "wrong-key-0123456789abcdef"}).status_code == 401


def test_validation_messages_end_in_one_period(model_dir, tmp_path):
    with make_client(model_dir, tmp_path / "f.db") as c:
        r = c.post("/recommend", json={"query": "x", "filters": {"year_min": 2000, "year_max": 1990}})
        assert r.status_code == 422 and "swap them." in r.json()["detail"] and ".." not in r.json()["detail"]


def test_evidence_rating_is_the_same_over_http_and_the_cli(product_model, tmp_path):
    user = _known_user(product_model)
    with make_client(product_model, tmp_path / "f.db") as c:
        http = c.post("/recommend", json={"user": user, "k": 3}).json()
    p = cli("recommend", "--model", product_model, "--user", user, "--k", "3", "--explain", "--json")
    assert p.returncode == 0, p.stderr
    local = json.loads(p.stdout)

    def ratings(res):
        return [(it["item_id"], e.get("item_id"), e.get("rating")) for it in res["items"] for e in it["evidence"]
                if e["kind"] == "history"]  # fmt: skip

    assert ratings(http) and ratings(http) == ratings(local)
    assert {r for _, _, r in ratings(local)} == {None}  # implicit data: no rating, at either door
