"""Sparse vs dense item-item block: accuracy and fit time on real catalogues, cost and accuracy at scale.

    python benchmarks/item_item.py                  # real data, then synthetic 100k and 1M items
    python benchmarks/item_item.py --stages real
    python benchmarks/item_item.py --stages synthetic --sizes 100000

**real** (ML-100K ratio and loo, Amazon Scientific and Office loo): the block alone. Dense EASE with its
reg chosen on validation, against the sparse block (:mod:`lucidrec.models.item_item`) with reg chosen on
validation at N = 64 and N from the neighbour grid on validation, as ``training.choose_item_item`` does.
Test NDCG@10 is after refitting on train+valid; fit time is that final fit.

**synthetic** (each size in its own process, so peak RSS means something): the catalogue of
``lucidrec.data.synthetic`` split 80/10/10 per user; the sparse block is fit on train (N from
``--neighbors``), and its fit time, peak RSS and size are recorded. Accuracy on held-out test interactions
(a sample of users, full ranking over the catalogue): the block alone and MostPopular, and -- at sizes where
the scale benchmark's model folder exists (``scale-bench/model-1000000``, items are prefix-consistent) --
the hybrid's towers with and without the block, the block's weight chosen on validation users.

Writes benchmarks/results/item_item.json and item_item.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = Path(os.environ.get("LUCIDREC_DATASETS", ROOT.parent / "shared" / "datasets"))
REG_GRID = (100.0, 200.0, 300.0, 500.0, 1000.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ====================================================================== real catalogues
def amazon(folder: str, name: str):
    """A Dataset from ``NAME.inter.json`` (user -> chronological item list; position is the time)."""
    import lucidrec.data

    path = DATASETS / folder / f"{name}.inter.json"
    seqs = json.loads(path.read_text())
    rows = [(u, str(i), t) for u, items in seqs.items() for t, i in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    inter["rating"] = 1.0
    return lucidrec.data.from_dataframes(inter, None, name=f"amazon-{name.lower()}")


def real_cases():
    import lucidrec.data
    from lucidrec.splits import split

    ml = lucidrec.data.load_movielens_100k()
    yield "ml-100k", "ratio", split(ml, "ratio")
    yield "ml-100k", "loo", split(ml, "loo")
    for folder, name in (("amazon18-scientific", "Scientific"), ("amazon14-office", "Office")):
        if (DATASETS / folder / f"{name}.inter.json").exists():
            ds = amazon(folder, name)
            yield ds.name, "loo", split(ds, "loo")


def stage_real() -> list[dict]:
    from lucidrec.baselines import EASE
    from lucidrec.evaluate import evaluate_scorer, fit_and_evaluate, parts_for
    from lucidrec.models.item_item import NEIGHBOR_GRID, SparseEASE

    out = []
    for name, protocol, sp_ in real_cases():
        n = sp_.dataset.n_items
        print(f"== {name} {protocol}: {n} items, {len(sp_.dataset.interactions)} interactions", flush=True)

        def valid(factory, sp_=sp_, **params):
            return fit_and_evaluate(factory, params, sp_, "valid", ks=(10,))[1]["ndcg@10"]

        def test(factory, sp_=sp_, **params):
            tv, _, _ = parts_for(sp_, "test")
            t0 = time.perf_counter()
            scorer = factory(**params).fit(sp_.dataset, tv)
            secs = time.perf_counter() - t0
            return evaluate_scorer(scorer, sp_, "test", ks=(10,))["ndcg@10"], secs

        dense_valid = {r: valid(EASE, reg=r) for r in REG_GRID}
        d_reg = max(dense_valid, key=dense_valid.get)
        d_ndcg, d_secs = test(EASE, reg=d_reg)
        print(f"   dense EASE reg={d_reg}: test NDCG@10 {d_ndcg:.4f}, fit {d_secs:.2f} s", flush=True)
        sparse_valid = {r: valid(SparseEASE, reg=r, neighbors=64) for r in REG_GRID}
        s_reg = max(sparse_valid, key=sparse_valid.get)
        rows = []
        for k in NEIGHBOR_GRID:
            v = sparse_valid[s_reg] if k == 64 else valid(SparseEASE, reg=s_reg, neighbors=k)
            t, secs = test(SparseEASE, reg=s_reg, neighbors=k)
            rows.append({"neighbors": k, "valid_ndcg@10": v, "test_ndcg@10": t, "fit_seconds": round(secs, 3)})
            print(f"   sparse N={k} reg={s_reg}: valid {v:.4f} test {t:.4f} fit {secs:.2f} s", flush=True)
        chosen = max(rows, key=lambda r: r["valid_ndcg@10"])
        out.append(
            {
                "dataset": name,
                "protocol": protocol,
                "n_items": n,
                "dense": {"reg": d_reg, "test_ndcg@10": d_ndcg, "fit_seconds": round(d_secs, 3)},
                "sparse_reg": s_reg,
                "sparse": rows,
                "chosen_neighbors": chosen["neighbors"],
                "chosen_vs_dense": chosen["test_ndcg@10"] / d_ndcg,
            }
        )
    return out


# ====================================================================== synthetic catalogues
def ndcg_at_10(scores: np.ndarray, relevant: list[np.ndarray]) -> np.ndarray:
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    disc = 1.0 / np.log2(np.arange(2, 12))
    out = np.zeros(len(relevant))
    for u, rel in enumerate(relevant):
        hit = np.isin(top[u], rel)
        out[u] = (hit * disc).sum() / disc[: min(len(rel), 10)].sum()
    return out


def towers_scorer(n_items: int):
    """The hybrid's towers for the first ``n_items`` items of the scale benchmark's 1M model folder, or
    None when that folder is not there."""
    from safetensors import safe_open

    from lucidrec.models.scoring import HybridScorer

    base = Path(os.environ.get("LUCIDREC_CACHE", Path.home() / ".cache" / "lucidrec"))
    path = base / "scale-bench" / "model-1000000" / "weights.safetensors"
    if not path.exists():
        return None
    w = {}
    with safe_open(str(path), "numpy") as f:
        for k in f.keys():
            v = f.get_tensor(k)
            w[k] = np.array(v[:n_items] if k in ("F", "H", "bias", "T") else v, dtype=np.float32)
    if w["F"].shape[0] < n_items:
        return None
    return HybridScorer(w, None)


def stage_synthetic(n_items: int, neighbors: int, reg: float, n_eval: int) -> dict:
    from lucidrec.data.synthetic import make_catalog
    from lucidrec.models.item_item import impute_cold_sparse, sparse_item_item
    from lucidrec.splits import split

    t0 = time.perf_counter()
    ds = make_catalog(n_items, seed=0).dataset()
    parts = split(ds, "ratio")
    x = ds.matrix(parts.train)
    gen_s = time.perf_counter() - t0
    rss0 = rss_mb()
    print(f"== synthetic {n_items}: {len(ds.interactions)} interactions, generated in {gen_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    B = sparse_item_item(x, reg, neighbors)
    fit_s = time.perf_counter() - t0
    peak_fit = peak_rss_mb()
    block_mb = (B.data.nbytes + B.indices.nbytes + B.indptr.nbytes) / 2**20
    print(f"   block N={neighbors}: fit {fit_s:.0f} s, {B.nnz} entries ({block_mb:.0f} MB), peak {peak_fit:.0f} MB")
    res = {
        "n_items": n_items,
        "n_interactions": len(ds.interactions),
        "neighbors": neighbors,
        "reg": reg,
        "fit_seconds": round(fit_s, 1),
        "block_nnz": int(B.nnz),
        "block_mb": round(block_mb, 1),
        "rss_before_fit_mb": round(rss0, 0),
        "peak_rss_after_fit_mb": round(peak_fit, 0),
    }
    # Held-out accuracy: a sample of test users, their train histories as input, full ranking.
    rng = np.random.default_rng(0)
    test_rel = ds.matrix(parts.test)
    valid_rel = ds.matrix(parts.valid)
    train_hist = x
    users_t = rng.permutation(np.flatnonzero(np.diff(test_rel.indptr) > 0))[:n_eval]
    users_v = rng.permutation(np.flatnonzero(np.diff(valid_rel.indptr) > 0))[: max(100, n_eval // 2)]
    pop = np.asarray(x.sum(0)).ravel().astype(np.float32)

    def block_scores(users):
        return np.asarray((train_hist[users] @ B).toarray(), np.float32)

    def evaluate(users, rel, score_fn, chunk=64):
        vals = []
        for s in range(0, len(users), chunk):
            us = users[s : s + chunk]
            sc = score_fn(us)
            seen = train_hist[us]
            r, c = seen.nonzero()
            sc[r, c] = -np.inf
            vals.append(ndcg_at_10(sc, [rel[u].indices for u in us]))
        return float(np.concatenate(vals).mean())

    res["test_users"] = len(users_t)
    res["block_only_ndcg@10"] = evaluate(users_t, test_rel, block_scores)
    res["popularity_ndcg@10"] = evaluate(users_t, test_rel, lambda us: np.tile(pop, (len(us), 1)))
    print(f"   block alone NDCG@10 {res['block_only_ndcg@10']:.4f}, popularity {res['popularity_ndcg@10']:.4f}")
    towers = towers_scorer(n_items)
    if towers is not None:
        from lucidrec.models.scoring import HybridScorer

        seen = np.zeros(n_items, bool)
        seen[np.unique(parts.train["iidx"].to_numpy())] = True
        t0 = time.perf_counter()
        Bc = impute_cold_sparse(B, towers.w["T"], seen, neighbors)
        res["cold_impute_seconds"] = round(time.perf_counter() - t0, 1)
        # Block weights of one per history item: pE is then the plain block score x_u @ B.
        w = dict(towers.w)
        w["rho_E"], w["pi_E"] = np.ones_like(w["rho_E"]), np.ones_like(w["pi_E"])
        hybrid = HybridScorer(w, Bc)
        del towers, w
        blend = (0.0, 0.5, 1, 2, 4, 8, 16, 64)

        def ndcg_by_weight(users, rel, unit=None, chunk=32):
            """NDCG@10 of towers + c * unit * block for every c in ``blend`` (chunked: 1M-wide rows)."""
            vals = {c: [] for c in blend}
            spreads = []
            for s in range(0, len(users), chunk):
                us = users[s : s + chunk]
                tw, bl = [], []
                for u in us:
                    st = hybrid.user_state(train_hist[u].indices)
                    tw.append(hybrid.score(st) - st.pE)  # the same model without the block
                    bl.append(st.pE)
                tw, bl = np.stack(tw), np.stack(bl)
                spreads.append((float(np.std(tw, axis=1).mean()), float(np.std(bl, axis=1).mean())))
                u_ = unit if unit is not None else spreads[0][0] / max(spreads[0][1], 1e-12)
                r, c_ = train_hist[us].nonzero()
                for c in blend:
                    sc = tw + c * u_ * bl
                    sc[r, c_] = -np.inf
                    vals[c].append(ndcg_at_10(sc, [rel[u].indices for u in us]))
            return {c: float(np.concatenate(v).mean()) for c, v in vals.items()}, u_

        grid, unit = ndcg_by_weight(users_v, valid_rel)
        best_c = max(grid, key=grid.get)
        test_grid, _ = ndcg_by_weight(users_t, test_rel, unit)
        res["towers_only_ndcg@10"] = test_grid[0.0]
        res["towers_plus_block_ndcg@10"] = test_grid[best_c]
        res["blend_weight"] = best_c
        res["valid_grid"] = grid
        print(
            f"   towers {res['towers_only_ndcg@10']:.4f} -> towers + block {res['towers_plus_block_ndcg@10']:.4f}"
            f" (c = {best_c}, cold imputation {res['cold_impute_seconds']} s)",
            flush=True,
        )
    res["peak_rss_mb"] = round(peak_rss_mb(), 0)
    return res


# ====================================================================== report
def write_report(data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "item_item.json").write_text(json.dumps(data, indent=2))
    lines = [
        "# Sparse vs dense item-item block",
        "",
        f"Machine: {data['machine']}. Generated by `benchmarks/item_item.py`.",
        "",
        "## Real catalogues: the block alone, test NDCG@10 (reg and N chosen on validation)",
        "",
        "| dataset | protocol | items | dense EASE | dense fit s | sparse N=32 | N=64 | N=128 | N=256 | chosen N "
        "| chosen/dense | sparse fit s (chosen) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data.get("real", []):
        by_n = {s["neighbors"]: s for s in r["sparse"]}
        ch = by_n[r["chosen_neighbors"]]
        cells = " | ".join(f"{by_n[k]['test_ndcg@10']:.4f}" if k in by_n else "-" for k in (32, 64, 128, 256))
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['n_items']} | {r['dense']['test_ndcg@10']:.4f} | "
            f"{r['dense']['fit_seconds']:.2f} | {cells} | {r['chosen_neighbors']} | {r['chosen_vs_dense']:.3f} | "
            f"{ch['fit_seconds']:.2f} |"
        )
    syn = data.get("synthetic", [])
    if syn:
        lines += [
            "",
            "## Synthetic catalogues: sparse block cost, held-out NDCG@10",
            "",
            "| items | interactions | N | fit s | block MB | peak RSS MB | block alone | popularity | towers "
            "| towers + block |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in syn:
            tw = r.get("towers_only_ndcg@10")
            tb = r.get("towers_plus_block_ndcg@10")
            lines.append(
                f"| {r['n_items']:,} | {r['n_interactions']:,} | {r['neighbors']} | {r['fit_seconds']} | "
                f"{r['block_mb']} | {r['peak_rss_after_fit_mb']:.0f} | {r['block_only_ndcg@10']:.4f} | "
                f"{r['popularity_ndcg@10']:.4f} | {'-' if tw is None else f'{tw:.4f}'} | "
                f"{'-' if tb is None else f'{tb:.4f}'} |"
            )
        lines += [
            "",
            "Fit s and peak RSS are for the block on the train part (peak RSS of the whole process up to the end",
            "of the fit, catalogue generation included), on 2 cores shared with six other jobs (load ~15): the",
            "CPU share was ~15%, so unloaded times are several times shorter. Accuracy: sampled test users, their",
            "train histories, full ranking over the catalogue. *Towers* are the scale benchmark's model",
            "(`scale-bench/model-1000000`: the hybrid trained on the 10k catalogue, its projections applied to",
            "every item, ID parts drawn at random), not trained on this catalogue's users, hence weak; *towers +",
            "block* blends the sparse block in (cold items imputed, weight chosen on validation users).",
        ]
    (RESULTS / "item_item.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", default=["real", "synthetic"], choices=["real", "synthetic"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--neighbors", nargs="+", type=int, default=[64, 32], help="N per size (last one repeats)")
    ap.add_argument("--reg", type=float, default=300.0)
    ap.add_argument("--eval-users", type=int, default=500)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one synthetic size
    ap.add_argument("--one-neighbors", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(stage_synthetic(args.one, args.one_neighbors, args.reg, args.eval_users)))
        return
    path = RESULTS / "item_item.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["machine"] = "2 CPU cores shared with other jobs (timings are indicative)"
    if "real" in args.stages:
        data["real"] = stage_real()
        write_report(data)
    if "synthetic" in args.stages:
        done = {r["n_items"]: r for r in data.get("synthetic", [])}
        for k, n in enumerate(args.sizes):
            nb = args.neighbors[min(k, len(args.neighbors) - 1)]
            cmd = [sys.executable, __file__, "--one", str(n), "--one-neighbors", str(nb), "--reg", str(args.reg)]
            cmd += ["--eval-users", str(args.eval_users)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(proc.stdout)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                continue
            line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
            done[n] = json.loads(line[len("RESULT ") :])
            data["synthetic"] = [done[s] for s in sorted(done)]
            write_report(data)
    write_report(data)


if __name__ == "__main__":
    main()
