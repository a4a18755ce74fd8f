"""Product queries on Amazon Industrial & Scientific: parse accuracy and constraint precision@10.

    python benchmarks/product_queries.py [--data ../shared/datasets/amazon18-scientific] [--model DIR]

The query set (benchmarks/data/product_queries_scientific.jsonl, English and Chinese) carries, for every
query, what it means, written by hand against the catalogue's own values:
  require     groups of values; an item must hold one value of every group (brand, category-path level),
  exclude     values no returned item may hold ("not from Hillman"),
  like_words  for "like the Stanley staples": words the referenced item's title must contain.
A required group implied by another (every "Beakers" item is also "Lab & Scientific Products") is dropped
before comparing, on both sides, so "实验室玻璃器皿" may name the lab category or not.

Reports
  (a) parse accuracy: share of queries whose parsed required groups, exclusions and reference all equal
      the hand-written ones;
  (b) constraint precision@10: share of returned items that satisfy every hand-written constraint, for
      the query alone and for the query with a known user's history (30 random users per query);
      queries whose constraints leave fewer than 10 items are reported apart (the ranking relaxes them).
The model is read from --model, or trained there first (loo split, default settings).
Writes benchmarks/results/product_queries.json and product_queries.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results"
QUERIES = HERE / "data" / "product_queries_scientific.jsonl"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "amazon18-scientific"


def load_queries(path: Path = QUERIES) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            q.setdefault("require", [])
            q.setdefault("exclude", [])
            q.setdefault("like_words", [])
            q.setdefault("lang", "en")
            out.append(q)
    return out


def _stem(w: str) -> str:
    w = w.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def value_masks(categories: list[list[str]]) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for i, cats in enumerate(categories):
        for c in cats:
            masks.setdefault(c, np.zeros(len(categories), bool))[i] = True
    return masks


def normalise(groups, masks: dict[str, np.ndarray]) -> set[frozenset]:
    """Required groups without those implied by another group (its items are a subset of this one's)."""
    gs = {frozenset(g) for g in groups}
    n = len(next(iter(masks.values())))

    def mask(g):
        return np.logical_or.reduce([masks.get(v, np.zeros(n, bool)) for v in g])

    keep = set()
    for g in gs:
        mg = mask(g)
        implied = any(h != g and mask(h).any() and not (mask(h) & ~mg).any() for h in gs)
        if not implied:
            keep.add(g)
    return keep


def parsed_groups(parser, pq) -> list[list[str]]:
    out = []
    for c, _ in parser.constraint_masks(pq):
        if c["type"] in ("genre", "genre_any"):
            out.append(c["value"] if isinstance(c["value"], list) else [c["value"]])
    return out


def gold_mask(g: dict, masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    ok = np.ones(n, bool)
    for group in g["require"]:
        ok &= np.logical_or.reduce([masks.get(v, np.zeros(n, bool)) for v in group])
    for v in g["exclude"]:
        if v in masks:
            ok &= ~masks[v]
    return ok


def like_ok(pq, g: dict) -> bool:
    if not g["like_words"]:
        return not pq.like_titles
    if len(pq.like_titles) != 1:
        return False
    words = {_stem(w) for w in re.findall(r"[\w']+", pq.like_titles[0])}
    return all(_stem(w) in words for w in g["like_words"])


def get_model(data: str, model_dir: Path):
    from lucidrec.recommender import Recommender

    if (model_dir / "config.json").exists():
        return Recommender.load(model_dir), None
    from lucidrec.data import load_dataset
    from lucidrec.models.config import HybridConfig
    from lucidrec.splits import split

    ds = load_dataset(data)
    s = split(ds, "loo")
    t0 = time.perf_counter()
    rec = Recommender(HybridConfig(mode="seq")).fit(ds, s.train, s.valid, progress=False)
    seconds = time.perf_counter() - t0
    rec.save(model_dir)
    return Recommender.load(model_dir), seconds


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "scientific")
    ap.add_argument("--users", type=int, default=30, help="known users per query for the history part")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--no-word-lists",
        action="store_true",
        help="empty the vocabulary's synonym tables: the language model alone reads the queries "
        "(results go to *_no_word_lists.json/.md)",
    )
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data}: not found. Fix: pass --data to the amazon18-scientific folder.")
    rec, train_seconds = get_model(args.data, args.model)
    if args.no_word_lists:
        from dataclasses import replace

        rec.vocabulary = replace(rec.vocabulary, synonyms={"en": {}, "zh": {}})
        rec.query_synonyms, rec._query_parser = None, None
    parser = rec.query_parser
    masks = value_masks(rec.categories)
    n = len(rec.item_ids)
    queries = load_queries()
    k = args.k
    rng = np.random.default_rng(2026)
    users = np.array(rec.known.user_ids())

    rows, t_parse = [], 0.0
    for g in queries:
        t0 = time.perf_counter()
        pq = rec.parse_query(g["q"])
        t_parse += time.perf_counter() - t0
        got = normalise(parsed_groups(parser, pq), masks)
        want = normalise(g["require"], masks)
        match = {
            "require": got == want,
            "exclude": set(pq.exclude_genres) == set(g["exclude"]),
            "like": like_ok(pq, g),
        }
        ok = gold_mask(g, masks, n)
        constrained = bool(g["require"] or g["exclude"])
        row = {
            "query": g["q"],
            "lang": g["lang"],
            "parse_ok": all(match.values()),
            "wrong": [f for f, v in match.items() if not v],
            "parsed": {
                "require": sorted(sorted(x) for x in got),
                "exclude": list(pq.exclude_genres),
                "like": list(pq.like_titles),
                "text": pq.text,
            },
            "matching_items": int(ok.sum()),
            "feasible": int(ok.sum()) >= k,
        }
        if constrained:
            res = rec.recommend(query=g["q"], k=k, lang=g["lang"])
            row["precision@10"] = float(np.mean([ok[rec.item_idx(it["item_id"])] for it in res["items"]]))
            precs = []
            for u in rng.choice(users, size=min(args.users, len(users)), replace=False):
                res = rec.recommend(user=str(u), query=g["q"], k=k, lang=g["lang"])
                precs.append(float(np.mean([ok[rec.item_idx(it["item_id"])] for it in res["items"]])))
            row["precision@10_with_history"] = float(np.mean(precs))
        rows.append(row)

    def mean(key, rows_):
        vals = [r[key] for r in rows_ if key in r]
        return float(np.mean(vals)) if vals else None

    feasible = [r for r in rows if r["feasible"]]
    infeasible = [r for r in rows if not r["feasible"] and "precision@10" in r]
    summary = {
        "data": Path(args.data).name,
        "queries": len(rows),
        "queries_zh": sum(r["lang"] == "zh" for r in rows),
        "queries_with_constraints": sum("precision@10" in r for r in rows),
        "parse_accuracy": mean("parse_ok", rows),
        "parse_accuracy_en": mean("parse_ok", [r for r in rows if r["lang"] == "en"]),
        "parse_accuracy_zh": mean("parse_ok", [r for r in rows if r["lang"] == "zh"]),
        "constraint_precision@10": mean("precision@10", rows),
        "constraint_precision@10_feasible": mean("precision@10", feasible),
        "constraint_precision@10_infeasible": mean("precision@10", infeasible),
        "constraint_precision@10_with_history": mean("precision@10_with_history", rows),
        "queries_feasible": sum("precision@10" in r for r in feasible),
        "queries_infeasible": len(infeasible),
        "parse_ms_per_query": round(1000 * t_parse / len(rows), 2),
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "targets": {"constraint_precision@10": 0.95},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"product_queries{'_no_word_lists' if args.no_word_lists else ''}.json").write_text(
        json.dumps({"summary": summary, "queries": rows}, indent=2, ensure_ascii=False)
    )
    md = [
        f"# Product query benchmark ({summary['data']}, {len(rows)} hand-labelled queries, "
        f"{summary['queries_zh']} in Chinese)",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| parse accuracy (required groups, exclusions, reference) | {summary['parse_accuracy']:.3f} | |",
        f"| parse accuracy, English / Chinese | {summary['parse_accuracy_en']:.3f} / "
        f"{summary['parse_accuracy_zh']:.3f} | |",
        f"| constraint precision@10, query only, all {summary['queries_with_constraints']} constrained queries "
        f"| {summary['constraint_precision@10']:.3f} | >= 0.95 |",
        f"| constraint precision@10, query only, queries leaving >= 10 items ({summary['queries_feasible']}) "
        f"| {summary['constraint_precision@10_feasible']:.3f} | |",
        f"| constraint precision@10, query only, queries leaving < 10 items ({summary['queries_infeasible']}; "
        f"relaxed) | {summary['constraint_precision@10_infeasible'] or 0:.3f} | |",
        f"| constraint precision@10, query + a known user's history ({args.users} users per query) "
        f"| {summary['constraint_precision@10_with_history']:.3f} | >= 0.95 |",
        f"| parse time per query | {summary['parse_ms_per_query']} ms | |",
        "",
        "Parse misses (what was understood instead):",
        "",
        *[
            f"- `{r['query']}`: wrong {', '.join(r['wrong'])}; parsed {json.dumps(r['parsed'], ensure_ascii=False)}"
            for r in rows
            if not r["parse_ok"]
        ],
        "",
        "Queries whose top-10 is not all in the hand-labelled set:",
        "",
        *[
            f"- `{r['query']}`: precision@10 {r['precision@10']:.2f} ({r['matching_items']} items meet the labels)"
            for r in rows
            if r.get("precision@10", 1.0) < 1.0
        ],
    ]
    (RESULTS / f"product_queries{'_no_word_lists' if args.no_word_lists else ''}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
