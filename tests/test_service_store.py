"""The SQLite feedback store under concurrency: many threads, several processes, and a real multi-worker
server, writing and reading at once. Nothing may be lost and every history stays in time order."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from lucidrec.errors import ConfigError  # noqa: E402
from lucidrec.service.store import FeedbackStore  # noqa: E402

N_THREADS = 16
PER_THREAD = 40


def test_basic_rows_history_order_and_delete(tmp_path):
    s = FeedbackStore(tmp_path / "f.db")
    a = s.add("u", "1", "liked", None, 20.0)
    b = s.add("u", "2", "rated", 4.0, 10.0)
    s.add("v", "3", "liked", None, 5.0)
    assert b > a and [r.item for r in s.history("u")] == ["2", "1"]
    assert s.history("u")[0].rating == 4.0 and s.history("nobody") == []
    assert s.users(10) == [("u", 2), ("v", 1)]
    assert s.delete_user("u")[0] == 2 and s.history("u") == [] and s.count() == 1
    assert s.ids_present([a, b]) == 0
    with sqlite3.connect(tmp_path / "f.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_seed_happens_once(tmp_path):
    s = FeedbackStore(tmp_path / "f.db")
    assert not s.seeded()
    assert s.seed([("u", "1", "rated", 5.0, 1.0), ("u", "2", "rated", None, 2.0)], origin="m") == 2
    assert s.seeded() and s.seed([("x", "1", "rated", 5.0, 1.0)], origin="m") == 0
    assert s.count() == 2 and s.count("seed") == 2 and s.count("api") == 0


def test_bad_paths_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        FeedbackStore(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        FeedbackStore(tmp_path / "missing" / "f.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite"):
        FeedbackStore(junk)


def test_many_threads_write_and_read_without_loss(tmp_path):
    s = FeedbackStore(tmp_path / "f.db")
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(t: int) -> list[int]:
        return [s.add(f"user{t % 4}", str(i), "liked", None, float(i)) for i in range(PER_THREAD)]

    def reader():
        try:
            while not stop.is_set():
                for u in range(4):
                    ts = [r.timestamp for r in s.history(f"user{u}")]
                    assert ts == sorted(ts)
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for r in readers:
        r.start()
    with ThreadPoolExecutor(N_THREADS) as pool:
        ids = [i for batch in pool.map(writer, range(N_THREADS)) for i in batch]
    stop.set()
    for r in readers:
        r.join()
    assert not errors
    assert len(ids) == len(set(ids)) == N_THREADS * PER_THREAD
    assert s.count() == N_THREADS * PER_THREAD and s.ids_present(ids) == len(ids)


def _process_writer(path: str, proc: int, n: int, out) -> None:
    store = FeedbackStore(path)
    ids = [store.add(f"p{proc}", str(i), "rated", 3.0, time.time()) for i in range(n)]
    out.put(ids)


def test_several_processes_write_without_loss(tmp_path):
    path = str(tmp_path / "f.db")
    FeedbackStore(path)  # create the schema first
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_writer, args=(path, p, 60, out)) for p in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    s = FeedbackStore(path)
    assert len(set(ids)) == 240 and s.count() == 240 and s.ids_present(ids) == 240
    assert all(len(s.history(f"p{p}")) == 60 for p in range(4))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json",
                                 **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_multi_worker_server_loses_no_feedback(tmp_path, tmp_path_factory):
    """Two uvicorn worker processes over one database; 16 client threads mix feedback and recommend."""
    from test_service import tiny_service_model

    model_dir = tiny_service_model(tmp_path_factory)
    key = "store-test-key-0123456789"
    port = _free_port()
    db = tmp_path / "server.db"
    env = {**os.environ, "LUCIDREC_API_KEYS": key}
    cmd = [sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(model_dir), "--db", str(db),
           "--port", str(port), "--workers", "2", "--rate-limit", "0", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            err = proc.stderr.read() if proc.poll() is not None else "(still starting)"
            pytest.fail("server did not start: " + err[-2000:])

        def client(t: int) -> list[int]:
            ids = []
            for i in range(15):
                st, body = _post(base + "/feedback", {"user": f"load{t}", "item": str(100 + (i % 40))},
                                 {"X-API-Key": key})  # fmt: skip
                assert st == 201, body
                ids.append(body["id"])
                st, body = _post(base + "/recommend", {"user": f"load{t}", "k": 5}, {"X-API-Key": key})
                # The very next request sees the write, whichever worker answers it.
                assert st == 200 and body["history_size"] == len({100 + (j % 40) for j in range(i + 1)}), body
            return ids

        with ThreadPoolExecutor(16) as pool:
            ids = [i for batch in pool.map(client, range(16)) for i in batch]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    s = FeedbackStore(db)
    assert len(ids) == len(set(ids)) == 240 and s.ids_present(ids) == 240 and s.count("api") == 240
