"""Load benchmark of the HTTP service: the real server (``lucidrec serve``, uvicorn) on loopback under N
concurrent clients that mix recommend (with and without a query) and feedback.

    python benchmarks/service.py [--model models/ml100k] [--clients 32,64] [--seconds 8] [--workers 1,2]
        [--synchronous FULL,NORMAL] [--threads 2]

Each client is closed-loop (sends its next request when the last one is answered) over one keep-alive
connection; the clients run in one asyncio process with a minimal HTTP/1.1 client, so the load generator
takes as little of the machine's CPU as possible (server and clients share the same cores). After each
level every feedback row id the server returned is looked up in the SQLite database.

The default mix is 70/30 reads/writes (50% recommend for a stored user, 20% with a query, 30% feedback),
all with an API key (reads of stored users are keyed by default). Each server configuration (workers x
synchronous) runs every client level; ``synchronous`` NORMAL next to FULL is the throughput cost of
durable writes (FULL fsyncs every acknowledged write), also measured without HTTP as single-row commits
per second on the same disk.

Writes benchmarks/results/service.json and service.md. Targets (issues 6 and 16, 2 cores): recommend
without a query at 32 clients p99 < 50 ms, zero errors, zero lost feedback rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
KEY = "bench-key-" + "0123456789abcdef"
# The same 20 queries as the latency benchmark, so the two measure the same encoder work.
from latency import QUERIES  # noqa: E402

OPS = ("recommend", "recommend_query", "feedback")
EXPLAIN = True  # --no-explain: recommendations without evidence and reasons


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough protocol for JSON requests to uvicorn."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self, method: str, path: str, body: dict | None, headers: str = "") -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{headers}\r\n"
        ).encode()
        self.writer.write(head + data)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if size == 0:
                await self.reader.readline()
                return status, b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def client(cid: int, port: int, users: list[str], items: list[str], mix, deadline: float, warmup_end: float,
                 seed: int, out: dict):  # fmt: skip
    rng = random.Random(seed * 1000 + cid)
    conn = Connection("127.0.0.1", port)
    await conn.open()
    auth = f"X-API-Key: {KEY}\r\n"
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            op = rng.choices(OPS, weights=mix)[0]
            user = rng.choice(users)
            if op == "feedback":
                body = {"user": user, "item": rng.choice(items), "event": "liked"}
                t0 = time.perf_counter()
                try:
                    status, raw = await conn.request("POST", "/feedback", body, auth)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status, raw = 0, b""
                    conn.close()
                    conn = Connection("127.0.0.1", port)
                    await conn.open()
            else:
                body = {"user": user, "k": 10, "explain": EXPLAIN}
                if op == "recommend_query":
                    body["query"] = rng.choice(QUERIES)
                t0 = time.perf_counter()
                try:
                    status, raw = await conn.request("POST", "/recommend", body, auth)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status, raw = 0, b""
                    conn.close()
                    conn = Connection("127.0.0.1", port)
                    await conn.open()
            dt = time.perf_counter() - t0
            if op == "feedback" and status == 201:
                out["feedback_ids"].append(json.loads(raw)["id"])  # every written row, warm-up included
            if t0 < warmup_end:
                continue
            out["lat"][op].append(dt)
            if not 200 <= status < 300:
                out["errors"][op] += 1
                if len(out["error_samples"]) < 5:
                    out["error_samples"].append(f"{op} {status} {raw[:200]!r}")
    finally:
        conn.close()


async def run_level(n_clients: int, port: int, users, items, mix, seconds: float, warmup: float, seed: int) -> dict:
    out = {"lat": {op: [] for op in OPS}, "errors": {op: 0 for op in OPS}, "feedback_ids": [], "error_samples": []}
    start = time.perf_counter()
    warmup_end, deadline = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *(client(c, port, users, items, mix, deadline, warmup_end, seed, out) for c in range(n_clients))
    )
    return out


def pct(xs, q) -> float | None:
    return round(float(np.percentile(xs, q)) * 1000, 2) if len(xs) else None


def start_server(model: Path, db: Path, workers: int, port: int, synchronous: str, threads: int) -> subprocess.Popen:
    env = {**os.environ, "LUCIDREC_API_KEYS": KEY, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lucidrec.cli", "serve", "--model", str(model), "--db", str(db), "--port", str(port),
           "--workers", str(workers), "--rate-limit", "0", "--log-level", "warning", "--synchronous", synchronous,
           "--threads", str(threads), "--queue", "256"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if json.loads(r.read())["model_loaded"]:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("server failed to start:\n" + proc.stderr.read()[-3000:])
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become healthy in 60 s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/ml100k")
    ap.add_argument("--clients", default="32,64")
    ap.add_argument("--seconds", type=float, default=8.0, help="Measured seconds per level.")
    ap.add_argument("--warmup", type=float, default=2.0, help="Unmeasured seconds at the start of each level.")
    ap.add_argument("--workers", default="1,2", help="Server processes; a list runs the levels for each.")
    ap.add_argument("--mix", default="0.5,0.2,0.3", help="Weights of recommend, recommend+query, feedback.")
    ap.add_argument("--synchronous", default="FULL,NORMAL", help="Store durability modes to run (FULL is served).")
    ap.add_argument("--threads", type=int, default=1, help="Worker threads per server process (serve --threads).")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(RESULTS / "service.json"))
    ap.add_argument("--no-explain", action="store_true", help="Ask for recommendations without reasons.")
    args = ap.parse_args(argv)
    global EXPLAIN
    EXPLAIN = not args.no_explain

    model = Path(args.model)
    if not (model / "config.json").exists():
        raise SystemExit(f"{model}: no model folder. Fix: lucidrec train --out {model}")
    mix = [float(x) for x in args.mix.split(",")]
    with np.load(model / "interactions.npz") as z:
        users = sorted(set(z["user"].astype(str)))
    items = json.loads((model / "items.json").read_text())["item"]
    levels = [int(c) for c in args.clients.split(",")]
    load_at_start = os.getloadavg()  # the cores are shared: record how busy they were

    baseline = inprocess_baseline(model, users, args.seed)
    print(f"in-process recommend (no HTTP, one at a time): p50 {baseline['p50_ms']} ms, p99 {baseline['p99_ms']} ms")
    commits = commit_rate(args.seed)
    print("single-row commits/s (no HTTP): " + json.dumps(commits))
    runs = [
        run_server(model, w, sync, levels, users, items, mix, args)
        for w in [int(w) for w in args.workers.split(",")]
        for sync in args.synchronous.upper().split(",")
    ]
    result = {
        "benchmark": "service",
        "command": "python benchmarks/service.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(model),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "mix": dict(zip(OPS, mix)),
        "seconds_per_level": args.seconds,
        "distinct_queries": len(QUERIES),
        "threads": args.threads,
        "inprocess_recommend": baseline,
        "commits_per_second": commits,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    for r in runs:
        print(f"workers={r['workers']} synchronous={r['synchronous']}: " + json.dumps(r["targets"]))
    return result


def commit_rate(seed: int, n: int = 300) -> dict:
    """Single-row committed inserts per second through FeedbackStore, FULL vs NORMAL, on the disk the
    benchmark's databases use: the raw price of an fsync per acknowledged write."""
    from lucidrec.service.store import FeedbackStore

    out = {}
    for sync in ("FULL", "NORMAL"):
        store = FeedbackStore(Path(tempfile.mkdtemp(prefix="lucidrec-bench-")) / "commits.db", synchronous=sync)
        t0 = time.perf_counter()
        for i in range(n):
            store.add(f"u{i % 50}", str(i % 100), "liked", None, float(i))
        out[sync] = round(n / (time.perf_counter() - t0), 1)
        store.close()
    out["full_vs_normal"] = round(out["FULL"] / out["NORMAL"], 3)
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Service load benchmark",
        "",
        f"`{result['command']}`; {result['cpus']} CPUs shared with other jobs (load average at start "
        f"{result['load_average_at_start']}); mix {result['mix']}; {result['seconds_per_level']} s per level; "
        f"{result['threads']} worker threads per process.",
        "",
        f"In-process recommend (no HTTP, one at a time): p50 {result['inprocess_recommend']['p50_ms']} ms, "
        f"p99 {result['inprocess_recommend']['p99_ms']} ms.",
        f"Single-row commits/s without HTTP: FULL {result['commits_per_second']['FULL']}, NORMAL "
        f"{result['commits_per_second']['NORMAL']} (ratio {result['commits_per_second']['full_vs_normal']}).",
        "",
        "| workers | synchronous | clients | req/s | recommend p50 / p99 ms | query p50 / p99 ms "
        "| feedback p50 / p99 ms "
        "| errors | feedback acknowledged | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        for lv in r["levels"]:
            lines.append(
                f"| {r['workers']} | {r['synchronous']} | {lv['clients']} | {lv['throughput_rps']} | "
                f"{lv['recommend']['p50_ms']} / {lv['recommend']['p99_ms']} | "
                f"{lv['recommend_query']['p50_ms']} / {lv['recommend_query']['p99_ms']} | "
                f"{lv['feedback']['p50_ms']} / {lv['feedback']['p99_ms']} | {lv['errors']} | "
                f"{lv['feedback_written']} | {lv['feedback_rows_lost']} |"
            )
    return "\n".join(lines) + "\n"


def inprocess_baseline(model: Path, users: list[str], seed: int, n: int = 300) -> dict:
    """The same recommend (stored history, k=10, explained) called directly in this process, one at a
    time, over a throw-away copy of the store: what the server adds on top is HTTP, JSON and queueing."""
    from threadpoolctl import threadpool_limits

    from lucidrec.service.engine import ModelHolder, recommend
    from lucidrec.service.schemas import RecommendRequest
    from lucidrec.service.store import FeedbackStore

    holder = ModelHolder(model, encoder_threads=1)
    rec = holder.get()
    store = FeedbackStore(Path(tempfile.mkdtemp(prefix="lucidrec-bench-")) / "baseline.db")
    store.seed(holder.seed_rows(), origin=str(model))
    rng = random.Random(seed)
    lat = []
    with threadpool_limits(limits=1):
        for _ in range(n):
            req = RecommendRequest(user=rng.choice(users), k=10)
            t0 = time.perf_counter()
            recommend(rec, store, req)
            lat.append(time.perf_counter() - t0)
    return {"n": n, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99)}


def run_server(model: Path, workers: int, synchronous: str, levels, users, items, mix, args) -> dict:
    db = Path(tempfile.mkdtemp(prefix="lucidrec-bench-")) / "feedback.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = start_server(model, db, workers, port, synchronous, args.threads)
    startup_s = time.perf_counter() - t0
    print(f"--- server with {workers} worker(s), synchronous={synchronous}, started in {startup_s:.1f} s", flush=True)
    rows = []
    try:
        for n in levels:
            rows.append(measure_level(n, port, db, users, items, mix, args))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    at32 = next((r for r in rows if r["clients"] == 32), None)
    return {
        "workers": workers,
        "synchronous": synchronous,
        "server_startup_s": round(startup_s, 2),
        "levels": rows,
        "targets": {
            "recommend_p99_ms_at_32_clients": {"target": 50, "measured": at32 and at32["recommend"]["p99_ms"]},
            "errors": {"target": 0, "measured": sum(r["errors"] for r in rows)},
            "feedback_rows_lost": {"target": 0, "measured": sum(r["feedback_rows_lost"] for r in rows)},
        },
    }


def measure_level(n: int, port: int, db: Path, users, items, mix, args) -> dict:
    out = asyncio.run(run_level(n, port, users, items, mix, args.seconds, args.warmup, args.seed))
    ids = out["feedback_ids"]
    present = 0
    with sqlite3.connect(db) as conn:
        for lo in range(0, len(ids), 500):
            chunk = ids[lo : lo + 500]
            q = f"SELECT COUNT(*) FROM feedback WHERE id IN ({','.join('?' * len(chunk))})"
            present += conn.execute(q, chunk).fetchone()[0]
    total = sum(len(v) for v in out["lat"].values())
    row = {
        "clients": n,
        "requests": total,
        "throughput_rps": round(total / args.seconds, 1),
        "errors": sum(out["errors"].values()),
        "feedback_written": len(ids),
        "feedback_rows_lost": len(ids) - present,
        "error_samples": out["error_samples"],
    }
    for op in OPS:
        lat = out["lat"][op]
        row[op] = {"n": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
                   "errors": out["errors"][op]}  # fmt: skip
    print(
        f"{n:>3} clients  {row['throughput_rps']:>7.1f} req/s  "
        + "  ".join(f"{op} p50/p95/p99 {row[op]['p50_ms']}/{row[op]['p95_ms']}/{row[op]['p99_ms']} ms" for op in OPS)
        + f"  errors {row['errors']}  lost rows {row['feedback_rows_lost']}/{len(ids)}",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main()
