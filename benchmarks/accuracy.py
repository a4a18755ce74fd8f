"""Accuracy benchmark: baselines, SASRec and the language-model recommender, test part, full ranking.

    python benchmarks/accuracy.py [--data ml-100k|FOLDER] [--protocols ratio loo cold] [--seeds 3] [--epochs 30]
    python benchmarks/accuracy.py --side-by-side      # one loo table over every accuracy_*.json written

Writes benchmarks/results/accuracy.json/.md for ML-100K with every protocol (the historic file), else
benchmarks/results/accuracy_<name>.json/.md (``--name`` overrides). Baselines are tuned on the validation
part and retrained on train+valid; SASRec trains on train+valid with each user's last known item (= the
validation item under loo) held out for early stopping, over the same seeds as LucidRec; the model trains
on train with early stopping on valid and scores the test part from each user's train+valid history
(mean and std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from progress import log  # benchmarks/ is on the path when a script runs

from lucidrec.comparison import compare
from lucidrec.data import load_dataset
from lucidrec.splits import split

RESULTS = Path(__file__).parent / "results"
SHOW = (
    "ndcg@10",
    "recall@10",
    "precision@10",
    "hr@10",
    "mrr@10",
    "map@10",
    "ndcg@20",
    "recall@20",
    "auc",
    "coverage@10",
)
#: Models seeded per run (mean ± std over seeds); the classic baselines are deterministic.
SEEDED = ("SASRec", "LucidRec")


def load_benchmark_data(spec: str):
    """The --data argument through the library's loader (ML-100K, Amazon JSON catalogues, atomic files)."""
    return load_dataset(spec)


def result_name(spec: str, ds, protocols) -> str:
    if ds.name in ("ml-100k", "ml100k") and set(protocols) == {"ratio", "loo", "cold"}:
        return "accuracy"
    return "accuracy_" + "".join(c if c.isalnum() else "-" for c in ds.name.lower()).strip("-")


def table(rows, protocol) -> list[str]:
    md = [f"## {protocol}", "", "| model | params | " + " | ".join(SHOW) + " |", "|---|---|" + "---|" * len(SHOW)]
    for r in rows:
        if r["protocol"] != protocol:
            continue
        cells = []
        for k in SHOW:
            v = r["metrics"].get(k)
            sd = r.get("std", {}).get(k)
            one_run = len(r.get("seeds") or []) == 1
            cells.append("-" if v is None else f"{v:.4f}" + (f" ± {sd:.4f}" if sd is not None and not one_run else ""))
        params = json.dumps(r.get("params", {})) if r.get("params") else "-"
        md.append(f"| {r['model']} | {params} | " + " | ".join(cells) + " |")
    return md + [""]


def targets(rows, protocols) -> list[str]:
    """The issue's targets, checked on the rows just measured."""
    by = {(r["protocol"], r["model"]): r["metrics"]["ndcg@10"] for r in rows}
    out = []
    for p in protocols:
        lr = by.get((p, "LucidRec"))
        if lr is None:
            continue
        if p == "cold" and (p, "TextKNN") in by:
            t = by[(p, "TextKNN")]
            out.append(f"- cold: LucidRec / TextKNN = {lr / t:.3f} (target >= 2): {'met' if lr >= 2 * t else 'MISSED'}")
        if p != "cold" and (p, "EASE") in by:
            e = by[(p, "EASE")]
            out.append(
                f"- {p}: LucidRec / EASE = {lr / e:.3f} (target >= 1.10): {'met' if lr >= 1.1 * e else 'MISSED'}"
            )
        if p != "cold" and (p, "SASRec") in by:
            q = by[(p, "SASRec")]
            out.append(f"- {p}: LucidRec / SASRec = {lr / q:.3f} (target >= 1.00): {'met' if lr >= q else 'MISSED'}")
    return out


def side_by_side(out: Path, protocol: str = "loo") -> str:
    """One table, one column pair per dataset, from every accuracy*.json that has ``protocol`` rows."""
    per_data: dict[str, dict] = {}
    sources: dict[str, dict[str, list[str]]] = {}  # dataset -> file -> models taken from it
    for f in sorted(out.glob("accuracy*.json")):
        d = json.loads(f.read_text())
        # accuracy.json (ML-100K, every protocol) predates meta["name"]; its dataset line starts with the name.
        name = d["meta"].get("name") or d["meta"]["dataset"].split()[0]
        for r in d["rows"]:
            if r["protocol"] == protocol and r["model"] not in per_data.get(name, {}):
                per_data.setdefault(name, {})[r["model"]] = r
                sources.setdefault(name, {}).setdefault(f.name, []).append(r["model"])
    models = []
    for rows in per_data.values():
        models += [m for m in rows if m not in models]

    def cell(r, k):
        if r is None:
            return "-"
        sd = r.get("std", {}).get(k) if len(r.get("seeds") or []) != 1 else None
        return f"{r['metrics'][k]:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")

    names = list(per_data)
    md = [
        f"# Accuracy side by side ({protocol}, test part, full ranking)",
        "",
        "Built by `python benchmarks/accuracy.py --side-by-side` from the per-dataset files next to it "
        "(see each file for the run's date, machine and seeds).",
        "",
        "| model | " + " | ".join(f"{n} NDCG@10 | {n} R@10" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for m in models:
        md.append(
            f"| {m} | "
            + " | ".join(
                f"{cell(per_data[n].get(m), 'ndcg@10')} | {cell(per_data[n].get(m), 'recall@10')}" for n in names
            )
            + " |"
        )
    # A dataset's rows may come from several runs (same split, different dates): say which from where.
    md += ["", "Rows by result file (a model's first file, in name order, wins):", ""]
    md += [f"- {n}: " + "; ".join(f"{', '.join(ms)} from `{f}`" for f, ms in sources[n].items()) for n in names]
    md += ["", "Targets (issue 15): LucidRec NDCG@10 >= 1.10 x EASE and >= SASRec on every loo split.", ""]
    for n in names:
        rows = per_data[n]
        if "LucidRec" in rows:
            lr = rows["LucidRec"]["metrics"]["ndcg@10"]
            for base, need in (("EASE", 1.10), ("SASRec", 1.0)):
                if base in rows:
                    ratio = lr / rows[base]["metrics"]["ndcg@10"]
                    verdict = "met" if ratio >= need else "MISSED"
                    md.append(f"- {n}: LucidRec / {base} = {ratio:.3f} (>= {need:.2f}): {verdict}")
    text = "\n".join(md) + "\n"
    (out / f"accuracy_side_by_side_{protocol}.md").write_text(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="ml-100k", help="'ml-100k' or a dataset folder (e.g. an Amazon catalogue)")
    ap.add_argument("--protocols", nargs="+", default=["ratio", "loo", "cold"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help="Training time cap per run (generous: a shared machine must not cut training short).",
    )
    ap.add_argument("--models", nargs="+", default=None, help="only these rows (e.g. SASRec LucidRec EASE)")
    ap.add_argument("--no-als", action="store_true", help="skip ALS (slow on a shared machine)")
    ap.add_argument("--name", default=None, help="result file stem (default: accuracy_<dataset name>)")
    ap.add_argument("--side-by-side", action="store_true", help="only rebuild the side-by-side loo table")
    ap.add_argument("--combine", nargs="+", type=Path, default=None, help="merge result JSON files into --name")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--report", type=Path, default=None, help="also write the HTML report (lucidrec report) of the first protocol"
    )
    args = ap.parse_args(argv)
    if args.side_by_side:
        print(side_by_side(args.out))
        return
    if args.combine:
        combine(args.combine, args.out, args.name or "accuracy_combined")
        return
    ds = load_benchmark_data(args.data)
    seeds = [2026 + k for k in range(args.seeds)]

    rows = []
    for protocol in args.protocols:
        s = split(ds, protocol)
        log(f"== {ds.name} {protocol}: train/valid/test = {s.sizes()}")
        # The library's comparison is also what `lucidrec report` runs: the two cannot drift apart.
        comp = compare(ds, s, seeds, args.models, args.epochs, args.max_minutes, include_als=not args.no_als, log=log)
        rows += comp.rows
        if args.report and protocol == args.protocols[0]:
            from lucidrec.report import render_html, report_from_comparison

            args.report.write_text(render_html(report_from_comparison(s, comp, args.epochs)), encoding="utf-8")
            log(f"  wrote {args.report}")
    meta = {
        "name": ds.name,
        "dataset": f"{ds.name} ({args.data}): {ds.n_users} users, {ds.n_items} items, {len(ds)} interactions",
        "command": f"python benchmarks/accuracy.py --data {args.data} --protocols {' '.join(args.protocols)} "
        f"--seeds {args.seeds} --max-minutes {args.max_minutes:g}"
        + (f" --models {' '.join(args.models)}" if args.models else ""),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, shared with other jobs",
        "date": time.strftime("%Y-%m-%d"),
        "seeds": seeds,
        "epochs": args.epochs,
        "max_minutes": args.max_minutes,
    }
    write_results(args.out, args.name or result_name(args.data, ds, args.protocols), meta, rows, args.protocols)


def write_results(out: Path, name: str, meta: dict, rows: list[dict], protocols: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    commands = meta.get("commands") or [meta.get("command", "python benchmarks/accuracy.py")]
    md = [
        f"# Accuracy on {meta['name']} (test part, full ranking)",
        "",
        f"Generated by `{'` and `'.join(commands)}` on {meta['date']} ({meta['machine']}); {meta['dataset']}. "
        f"Baselines: hyperparameters chosen on validation, retrained on train+valid. {' and '.join(SEEDED)}: "
        f"mean ± std over seeds {meta['seeds']}, training capped at {meta.get('max_minutes', '-')} min per run "
        "(wall clock, on the shared machine). Cold protocol: held-out items ranked among themselves.",
        "",
    ]
    for protocol in protocols:
        md += table(rows, protocol)
    checks = targets(rows, protocols)
    if checks:
        md += ["## Targets (issue 15)", "", *checks, ""]
    (out / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))


def combine(files: list[Path], out: Path, name: str) -> None:
    """One result file from runs of the same dataset that computed different rows (run in parallel)."""
    parts = [json.loads(f.read_text()) for f in files]
    meta = dict(parts[0]["meta"])
    if len({p["meta"]["name"] for p in parts}) != 1:
        raise SystemExit(f"--combine: the files are from different datasets: {[p['meta']['name'] for p in parts]}")
    # A part that is itself a combination brings its own list of commands.
    meta["commands"] = [c for p in parts for c in (p["meta"].get("commands") or [p["meta"].get("command", "?")])]
    meta.pop("command", None)
    rows = [r for p in parts for r in p["rows"]]
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    write_results(out, name, meta, rows, protocols)


if __name__ == "__main__":
    main()
