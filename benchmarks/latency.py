"""Latency benchmark: training time, recommend latency (known user, with a new query), explanation
overhead, and a fresh `lucidrec recommend` process, beside a plain EASE scoring in the same process.

    python benchmarks/latency.py [--model models/ml100k] [--train]

Writes benchmarks/results/latency.json and latency.md. Targets (issue 3): training < 3 min, top-10 for a
known user < 5 ms median, with a new query < 10 ms median, fresh process < 1 s; explaining a top-10
list adds < 2 ms median (issue 4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

RESULTS = Path(__file__).parent / "results"
QUERIES = [
    "a funny animated film for kids",
    "dark crime thriller",
    "romantic comedy from the nineties",
    "space adventure with aliens",
    "a scary horror movie",
    "war drama based on a true story",
    "musical with songs and dancing",
    "a western with gunfights",
    "mystery detective story",
    "documentary about music",
    "heist movie",
    "film noir classic",
    "feel-good family film",
    "epic fantasy quest",
    "political thriller",
    "teen comedy",
    "martial arts action",
    "psychological drama",
    "animated musical",
    "sci-fi about robots",
]


def median_ms(fn, args_list, repeat=1):
    times = []
    for a in args_list:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(a)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), float(np.percentile(times, 99))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path("models/ml100k"))
    ap.add_argument("--train", action="store_true", help="(Re)train the model and time it.")
    args = ap.parse_args(argv)
    from lucidrec.baselines import EASE
    from lucidrec.data import load_dataset
    from lucidrec.history import Histories
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender
    from lucidrec.splits import split

    ds = load_dataset("ml-100k")
    s = split(ds, "ratio")
    out = {}
    if args.train or not (args.model / "config.json").exists():
        t0 = time.perf_counter()
        rec = Recommender(HybridConfig(mode="set")).fit(ds, s.train, s.valid, progress=False)
        out["train_seconds_including_encoding"] = time.perf_counter() - t0
        rec.save(args.model)
    rec = Recommender.load(args.model)
    out["train_seconds_reported"] = rec.train_report.get("seconds")
    users = [str(u) for u in ds.user_ids[:200]]
    rec.recommend(user=users[0])  # warm-up
    out["recommend_user_ms_p50"], out["recommend_user_ms_p99"] = median_ms(lambda u: rec.recommend(user=u, k=10), users)
    rec.recommend(query="warm up")
    out["recommend_query_ms_p50"], out["recommend_query_ms_p99"] = median_ms(
        lambda q: rec.recommend(user="196", query=q, k=10), QUERIES
    )
    out["encode_query_ms_p50"], _ = median_ms(rec.encode_query, QUERIES)
    with_expl, _ = median_ms(lambda u: rec.recommend(user=u, k=10, explain=True), users)
    out["recommend_explain_ms_p50"] = with_expl
    out["explain_overhead_ms_p50"] = with_expl - out["recommend_user_ms_p50"]
    # Baseline in the same process: EASE scoring of one user (x_u @ B) plus top-10.
    ease = EASE(300.0).fit(ds, s.train_valid())
    hist = Histories.from_frame(s.train_valid(), ds.n_users, ds.n_items)
    uidx = np.arange(200)

    def ease_one(u):
        sc = ease.score(np.array([u]), hist)[0]
        np.argpartition(-sc, 10)[:10]

    out["ease_user_ms_p50"], _ = median_ms(ease_one, uidx)
    out["recommend_vs_ease_ratio"] = out["recommend_user_ms_p50"] / out["ease_user_ms_p50"]
    # A fresh process, as a user runs it.
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lucidrec.cli", "recommend", "--model", str(args.model), "--user", "196", "--json"],
            check=True,
            capture_output=True,
        )
        walls.append(time.perf_counter() - t0)
    out["fresh_process_recommend_s_median"] = statistics.median(walls)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(out, indent=2))
    lines = ["# Latency on ML-100K (2 CPU cores)", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in out.items()]
    (RESULTS / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
