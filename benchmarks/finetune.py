"""What fine-tuning the text encoder on behaviour buys: frozen vs fine-tuned (full, LoRA) on ML-100K.

    python benchmarks/finetune.py [--protocols cold ratio] [--steps 80] [--long-steps 300] [--work encoders/bench]

For each protocol the encoder is fine-tuned (``lucidrec finetune-encoder``, in a subprocess so its peak memory is
its own) on that protocol's TRAIN part only — under ``cold`` the held-out items never occur in a training pair —
then the recommender is trained with each encoder (frozen / full / LoRA) exactly as ``benchmarks/accuracy.py``
does and scored on the test part (full ranking; cold items ranked among themselves). Under ``cold`` the text-only
nearest-neighbour scorer (TextKNN) is reported too: it isolates what the embeddings alone carry. Under ``ratio``
the query benchmark's measures (benchmarks/queries.py) are recomputed for each encoder: constraint precision@10
of query-only results and NDCG@10 of query + history rankings.

Finished stages are kept in ``WORK`` (encoder folders and rows.json), so an interrupted run continues where it
stopped. Writes benchmarks/results/finetune.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from progress import log  # benchmarks/ is on the path when a script runs

from lucidrec.baselines import TextNeighbours
from lucidrec.data import ItemTextBuilder, load_dataset
from lucidrec.encoders import CachedEncoder, SentenceTransformerEncoder
from lucidrec.evaluate import evaluate_scorer
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender
from lucidrec.splits import split

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODE = {"ratio": "set", "cold": "set"}
SEED = 2026


def finetune(protocol: str, mode: str, folder: Path, steps: int, data: str = "ml-100k") -> dict:
    """Fine-tune in a subprocess (unless a finished run with the same steps is already there); its report."""
    report_path = folder / "finetune.json"
    if report_path.exists():
        rep = json.loads(report_path.read_text())
        if rep["config"]["steps"] == steps:
            log(f"  reusing {folder} ({rep['mode']}, {rep['steps']} steps)")
            return rep
    cmd = [sys.executable, "-m", "lucidrec.cli", "finetune-encoder", "--data", data, "--protocol", protocol]
    cmd += ["--out", str(folder), "--steps", str(steps), "--warmup", str(max(1, steps // 10)), "--seed", str(SEED)]
    cmd += ["--eval-every", "20", "--patience", "3", "--overwrite"] + (["--lora"] if mode == "lora" else [])
    state = folder / "checkpoint" / "state.json"
    if state.exists() and json.loads(state.read_text())["config"]["steps"] == steps:  # an interrupted run of ours
        cmd = [c for c in cmd if c != "--overwrite"] + ["--resume"]
    log("  $ " + " ".join(cmd[1:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    rep = json.loads(report_path.read_text())
    rep["wall_seconds"] = round(time.perf_counter() - t0, 1)  # includes start-up, validation and ONNX export
    report_path.write_text(json.dumps(rep, indent=1))
    return rep


def _queries_module():
    sys.path.insert(0, str(HERE))
    try:
        import queries  # benchmarks/queries.py (the lead's query benchmark)
    except ImportError:
        return None
    finally:
        sys.path.pop(0)
    return queries


def query_measures(rec: Recommender, s, qmod, users_per_query: int) -> dict:
    """benchmarks/queries.py's (b) constraint precision@10 and (c) NDCG/Recall@10 of the query+history ranking."""
    queries = qmod.load_queries()
    k = 10
    precisions = []
    for g in queries:
        res = rec.recommend(query=g["q"], k=k, lang=g["lang"])
        ok = qmod.gold_mask(g, rec.categories, rec.years)
        precisions.append(
            float(np.mean([ok[rec.item_idx(it["item_id"])] for it in res["items"]])) if res["items"] else 0.0
        )
    test_items = s.test.groupby("user")["item"].apply(lambda x: [rec.item_idx(i) for i in x]).to_dict()
    rng = np.random.default_rng(SEED)  # the same users for every encoder
    users_all = np.array(sorted(set(rec._known_users_with_history()) & set(test_items)))
    ndcgs, recalls = [], []
    for g in queries:
        ok = qmod.gold_mask(g, rec.categories, rec.years)
        if ok.all():
            continue
        cand = [u for u in users_all if any(ok[i] for i in test_items[u])]
        if not cand:
            continue
        for u in rng.choice(cand, size=min(users_per_query, len(cand)), replace=False):
            ranked = [rec.item_idx(it["item_id"]) for it in rec.recommend(user=u, query=g["q"], k=k)["items"]]
            n, r = qmod.ndcg_recall(ranked, {i for i in test_items[u] if ok[i]}, k)
            ndcgs.append(n), recalls.append(r)
    return {
        "constraint_precision@10": float(np.mean(precisions)),
        "query_history_ndcg@10": float(np.mean(ndcgs)),
        "query_history_recall@10": float(np.mean(recalls)),
        "query_history_pairs": len(ndcgs),
    }


def evaluate_encoder(ds, s, protocol, name, encoder, args, qmod) -> dict:
    t0 = time.perf_counter()
    cfg = HybridConfig(seed=SEED, mode=MODE[protocol], epochs=args.epochs, max_minutes=args.max_minutes)
    rec = Recommender(cfg, encoder=encoder).fit(ds, s.train, s.valid, progress=False)
    fit_seconds = time.perf_counter() - t0
    m = evaluate_scorer(rec.as_scorer(ds), s, "test")
    row = {
        "protocol": protocol,
        "encoder": name,
        "ndcg@10": m["ndcg@10"],
        "recall@10": m["recall@10"],
        "ndcg@20": m["ndcg@20"],
        "recall@20": m["recall@20"],
        "recommender_fit_seconds": round(fit_seconds, 1),
        "recommender_epochs": len(rec.train_report["epochs"]),
    }
    if protocol == "cold":
        emb = CachedEncoder(SentenceTransformerEncoder(encoder)).encode(ItemTextBuilder().build(ds))
        knn = evaluate_scorer(TextNeighbours(emb).fit(ds, s.train_valid()), s, "test")
        row["textknn_ndcg@10"], row["textknn_recall@10"] = knn["ndcg@10"], knn["recall@10"]
    if protocol == "ratio" and qmod is not None:
        row.update(query_measures(rec, s, qmod, args.query_users))
    log(f"  {protocol}/{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="ml-100k", help="'ml-100k' or a dataset folder (e.g. an Amazon catalogue)")
    ap.add_argument("--protocols", nargs="+", default=["cold", "ratio"], choices=["cold", "ratio"])
    ap.add_argument("--variants", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    ap.add_argument("--steps", type=int, default=80, help="fine-tuning steps (batch 32, 32 tokens)")
    ap.add_argument("--epochs", type=int, default=30, help="recommender epochs (early stopping on valid)")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="recommender time cap (generous on purpose)")
    ap.add_argument("--long-steps", type=int, default=0, help="also a full fine-tune of this many steps (cold)")
    ap.add_argument("--query-users", type=int, default=10, help="users per query for the query+history measure")
    ap.add_argument("--work", type=Path, default=Path("encoders/bench"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows_path = args.work / "rows.json"
    done = json.loads(rows_path.read_text()) if rows_path.exists() else {}
    qmod = _queries_module()
    if qmod is None:
        log("benchmarks/queries.py not found: query measures skipped")
    ds = load_dataset(args.data)
    stem = "finetune" if args.data == "ml-100k" else f"finetune_{ds.name.lower()}"
    finetunes, names = {}, {}
    for protocol in args.protocols:
        s = split(ds, protocol, SEED)
        log(f"== {protocol}: train/valid/test = {s.sizes()}")
        encoders = {"frozen": None}
        runs = [(v, v, args.steps) for v in args.variants]
        if protocol == "cold" and args.long_steps:  # does the hybrid gain from a longer run?
            runs.append((f"full-{args.long_steps}", "full", args.long_steps))
        for name, mode, steps in runs:
            folder = args.work / f"{protocol}-{name}"
            finetunes[f"{protocol}/{name}"] = finetune(protocol, mode, folder, steps, args.data)
            encoders[name] = str(folder)
        names[protocol] = list(encoders)
        for name, enc in encoders.items():
            key = f"{protocol}/{name}/{args.steps}/{args.epochs}"
            if key not in done:
                done[key] = evaluate_encoder(ds, s, protocol, name, enc, args, qmod)
                rows_path.write_text(json.dumps(done, indent=1))
    rows = [done[f"{p}/{n}/{args.steps}/{args.epochs}"] for p in args.protocols for n in names[p]]
    for r in rows:
        ft = finetunes.get(f"{r['protocol']}/{r['encoder']}")
        if ft:
            first = ft["history"][0]
            best = next(h for h in ft["history"] if h["step"] == ft["best_step"])
            r["finetune"] = {
                "steps": ft["steps"],
                "best_step": ft["best_step"],
                "stopped_early": ft["stopped_early"],
                "train_seconds": ft["train_seconds"],
                "wall_seconds": ft.get("wall_seconds"),
                "peak_rss_mb": ft["peak_rss_mb"],
                "trainable_params": ft["n_trainable_params"],
                "heldout_pair_loss": [first["val_loss"], best["val_loss"]],
                "heldout_pair_acc": [first["val_acc"], best["val_acc"]],
                "onnx_max_abs_diff": ft.get("onnx_max_abs_diff"),
            }
    by = {(r["protocol"], r["encoder"]): r for r in rows}
    verdict = {}
    for p in args.protocols:
        f = by[(p, "frozen")]
        for n in names[p][1:]:
            verdict[f"{p}/{n}"] = {
                "ndcg@10_ratio_to_frozen": by[(p, n)]["ndcg@10"] / f["ndcg@10"],
                "ndcg@10_delta": by[(p, n)]["ndcg@10"] - f["ndcg@10"],
            }
    meta = {
        "dataset": "ml-100k (recbole 1.2.1 atomic files)" if args.data == "ml-100k" else f"{ds.name} ({args.data})",
        "seed": SEED,
        "steps": args.steps,
        "long_steps": args.long_steps or None,
        "recommender_epochs": args.epochs,
        "queries_benchmark": "included (benchmarks/queries.py measures (b), (c))" if qmod else "not present",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, shared with other jobs (times are noisy)",
        "date": time.strftime("%Y-%m-%d"),
        "targets": {"cold ndcg@10 vs frozen": ">= 1.10x", "ratio ndcg@10": "no loss"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "verdict": verdict}, indent=2))
    print("\n".join(table(rows, args.protocols)))


def table(rows: list[dict], protocols: list[str]) -> list[str]:
    md = [
        "| protocol | encoder | NDCG@10 | Recall@10 | TextKNN NDCG@10 | query constr. P@10 | query+history NDCG@10 "
        "| fine-tune steps (best) | fine-tune s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ft = r.get("finetune") or {}

        def f(key, row=r):
            return f"{row[key]:.4f}" if key in row else "-"

        md.append(
            f"| {r['protocol']} | {r['encoder']} | {f('ndcg@10')} | {f('recall@10')} | {f('textknn_ndcg@10')} | "
            f"{f('constraint_precision@10')} | {f('query_history_ndcg@10')} | "
            + (
                f"{ft['steps']} ({ft['best_step']}) | {ft['train_seconds']:.0f} | {ft['peak_rss_mb']:.0f} |"
                if ft
                else "- | - | - |"
            )
        )
    return md


if __name__ == "__main__":
    main()
