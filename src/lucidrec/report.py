"""One self-contained HTML evaluation report (``lucidrec report``).

:func:`build_report` measures; :func:`render_html` draws. The accuracy table comes from
:func:`lucidrec.comparison.compare`, the very code path of ``benchmarks/accuracy.py``, so the report and
the benchmark print the same numbers for the same data, protocol, seeds and epochs. The other sections
read the first seed's fitted models:

- NDCG@10 by history length (per-user NDCG, users binned by how many items they had);
- popularity and coverage of what each model recommends (catalogue coverage, mean popularity
  percentile, share of the most popular tenth, Gini of the recommendation counts);
- explanation metrics of LucidRec, through the public Recommender API only: completeness (the
  evidence sums to the score), deletion (removing the top cited history item lowers the score, by about
  the claimed contribution) and concentration (share of the history contribution in the top 3 cited);
- example recommendations with their reasons.

Plots are matplotlib SVGs inlined in the page (``lucidrec[report]``); the page loads nothing else.
The measured numbers are also embedded as JSON (``<script id="report-data">``).
"""

from __future__ import annotations

import html
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lucidrec.errors import ConfigError, DependencyError

TABLE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "coverage@10")


# ====================================================================== measuring
def build_report(
    dataset,
    protocol: str = "loo",
    seeds=(2026,),
    epochs: int = 30,
    max_minutes: float = 10.0,
    models: list[str] | None = None,
    explain_users: int = 50,
    examples: int = 3,
    k: int = 10,
    lang: str = "en",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Everything the page shows, as plain JSON-ready data."""
    from lucidrec.comparison import compare
    from lucidrec.splits import split as make_split

    if lang not in ("en", "zh"):
        raise ConfigError(f"lang='{lang}': supported languages are 'en' and 'zh'.")
    if models is not None and "lucidrec" not in {m.lower() for m in models}:
        raise ConfigError("--models must include LucidRec: the report's explanations and examples come from it.")
    log = log or (lambda _msg: None)
    t0 = time.perf_counter()
    s = make_split(dataset, protocol)
    log(f"{dataset.name} {protocol}: train/valid/test = {s.sizes()}")
    comp = compare(dataset, s, list(seeds), models, epochs, max_minutes, log=log)
    return report_from_comparison(s, comp, epochs, explain_users, examples, k, lang, time.perf_counter() - t0)


def report_from_comparison(
    s, comp, epochs: int, explain_users: int = 50, examples: int = 3, k: int = 10, lang: str = "en", seconds=0.0
) -> dict:
    """The report's data from a finished :func:`lucidrec.comparison.compare` (its first seed's models):
    the accuracy benchmark calls this to write a report without training anything twice."""
    from lucidrec.comparison import per_user

    t0 = time.perf_counter()
    dataset, protocol = s.dataset, s.protocol
    users = {name: per_user(scorer, s, k) for name, scorer in comp.scorers.items()}
    popularity = np.bincount(s.train_valid()["iidx"].to_numpy(), minlength=dataset.n_items)
    n_candidates = dataset.n_items if s.cold_items is None else len(s.cold_items)
    rec = comp.recommender
    rng = np.random.default_rng(2026)
    test_users = dataset.user_ids[next(iter(users.values())).users] if users else np.array([], dtype=object)
    sample = rng.permutation(test_users)
    seeds = next((r["seeds"] for r in comp.rows if "seeds" in r), [])
    out = {
        "meta": {
            "dataset": dataset.name,
            "users": int(dataset.n_users),
            "items": int(dataset.n_items),
            "interactions": int(len(dataset)),
            "protocol": protocol,
            "split_sizes": list(map(int, s.sizes())),
            "seeds": list(seeds),
            "epochs": epochs,
            "k": k,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "accuracy": comp.rows,
        "by_history": history_bins(users),
        "popularity": popularity_stats(users, popularity, n_candidates),
        "explanations": explanation_metrics(rec, sample[:explain_users], k),
        "examples": example_recommendations(rec, s, sample[:examples], k, lang),
    }
    out["seconds"] = round(seconds + time.perf_counter() - t0, 1)
    return out


def history_bins(users: dict, n_bins: int = 5) -> dict:
    """Per model, mean NDCG@k of the users in each history-length bin (bins: quantiles of the lengths)."""
    if not users:
        return {"edges": [], "counts": [], "ndcg": {}}
    length = next(iter(users.values())).history_length
    edges = np.unique(np.quantile(length, np.linspace(0, 1, n_bins + 1)).round().astype(int))
    if len(edges) < 2:
        edges = np.array([length.min(), length.max() + 1])
    which = np.clip(np.searchsorted(edges, length, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    ndcg = {
        name: [float(pu.ndcg[which == b].mean()) if counts[b] else None for b in range(len(edges) - 1)]
        for name, pu in users.items()
    }
    labels = [f"{edges[b]}-{edges[b + 1] - 1}" if b < len(edges) - 2 else f"{edges[b]}+" for b in range(len(edges) - 1)]
    return {"labels": labels, "edges": edges.tolist(), "counts": counts.tolist(), "ndcg": ndcg}


def popularity_stats(users: dict, popularity: np.ndarray, n_candidates: int) -> dict:
    """What each model recommends: coverage of the candidates, mean popularity percentile of the
    recommended items, the share of them among the most popular tenth of the catalogue, the Gini index of
    how often each item is recommended, and the share of recommendations per popularity decile."""
    order = np.argsort(np.argsort(popularity, kind="stable"), kind="stable")
    percentile = order / max(len(popularity) - 1, 1)  # 0 = least popular, 1 = most popular
    decile = np.minimum((percentile * 10).astype(int), 9)
    out = {}
    for name, pu in users.items():
        top = pu.top[pu.top >= 0]
        if len(top) == 0:
            continue
        counts = np.bincount(top, minlength=len(popularity)).astype(np.float64)
        sorted_counts = np.sort(counts)
        n = len(sorted_counts)
        gini = float((2 * np.arange(1, n + 1) - n - 1) @ sorted_counts / (n * sorted_counts.sum()))
        out[name] = {
            "coverage": float((counts > 0).sum() / n_candidates),
            "mean_popularity_percentile": float(percentile[top].mean()),
            "share_top10pct_popular": float((decile[top] == 9).mean()),
            "gini": gini,
            "deciles": np.bincount(decile[top], minlength=10).astype(float) / len(top),
        }
        out[name]["deciles"] = out[name]["deciles"].tolist()
    return out


def _history_spec(entries, rec) -> list:
    return [(str(rec.item_ids[e.item]), e.rating) for e in entries]


def explanation_metrics(rec, users, k: int = 10) -> dict:
    """Faithfulness of LucidRec's evidence over ``users``' top-k (public Recommender API only).

    - completeness: max |sum of the evidence contributions - score| (the parts must add up);
    - deletion: share of items whose score drops when the top cited history item is removed;
    - median |claimed contribution - actual drop| of that removal (score units) and the same relative to
      the item's score spread (the claim should be the drop: the score is linear in the history);
    - top-3 share: the part of the positive history contribution carried by the 3 largest items.
    """
    if rec is None or len(users) == 0:
        return {}
    completeness, lowered, abs_err, top3 = [], [], [], []
    n_items = 0
    for uid in users:
        entries, _ = rec.resolve_history(user=str(uid))
        if len(entries) < 2:
            continue
        res = rec.recommend(user=str(uid), k=k, explain=True)
        spec = _history_spec(entries, rec)
        for item in res["items"]:
            n_items += 1
            ev = item["evidence"]
            total = sum(e.get("contribution", 0.0) for e in ev if "contribution" in e)
            completeness.append(abs(total - item["score"]))
            cited = [e for e in ev if e["kind"] == "history"]
            positive = sum(e["contribution"] for e in cited) + sum(
                max(e["contribution"], 0.0) for e in ev if e["kind"] == "history_other"
            )
            if cited and positive > 0:
                top3.append(sum(e["contribution"] for e in cited[:3]) / positive)
            if not cited:
                continue
            rest = [h for h in spec if h[0] != cited[0]["item_id"]]
            new = float(rec.score_items(history=rest or None, items=[item["item_id"]])[0]) if rest else None
            if new is None:  # the history was one item: removing it leaves bias + interaction only
                continue
            drop = item["score"] - new
            lowered.append(float(drop > 0))
            abs_err.append(abs(cited[0]["contribution"] - drop))
    return {
        "explained_users": int(len(users)),
        "explained_items": int(n_items),
        "completeness_max_abs_error": float(max(completeness)) if completeness else None,
        "deletion_lowers_score": float(np.mean(lowered)) if lowered else None,
        "median_abs_error_claim_vs_drop": float(np.median(abs_err)) if abs_err else None,
        "top3_share_of_history_contribution": float(np.mean(top3)) if top3 else None,
    }


def example_recommendations(rec, split, users, k: int = 10, lang: str = "en", show: int = 5) -> list[dict]:
    """A few users: the tail of their history, the top recommendations with reasons, the held-out item."""
    if rec is None:
        return []
    ds = split.dataset
    titles = ds.titles()
    test = split.test.groupby("user")["iidx"].apply(list).to_dict()
    out = []
    for uid in users:
        entries, _ = rec.resolve_history(user=str(uid))
        res = rec.recommend(user=str(uid), k=k, explain=True, lang=lang)
        held = [str(ds.item_ids[i]) for i in test.get(str(uid), [])]
        out.append(
            {
                "user": str(uid),
                "history_size": len(entries),
                "recent_history": [str(rec.titles[e.item]) for e in entries[-show:]][::-1],
                "held_out": [str(titles[ds.item_idx(i)]) for i in held],
                "recommendations": [
                    {
                        "rank": it["rank"],
                        "title": it["title"],
                        "score": float(it["score"]),
                        "reason": it.get("reason", ""),
                        "held_out": it["item_id"] in held,
                    }
                    for it in res["items"][:show]
                ],
            }
        )
    return out


# ====================================================================== drawing
def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG in HTML


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise DependencyError(
            "the report draws its plots with matplotlib. Fix: pip install 'lucidrec[report]'."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, selectable labels
    plt.rcParams["svg.hashsalt"] = "lucidrec"  # stable ids: the same report renders to the same bytes
    return plt


def plot_history(by_history: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(by_history["labels"]))
    for name, values in by_history["ndcg"].items():
        ax.plot(x, [np.nan if v is None else v for v in values], marker="o", label=name)
    ax.set_xticks(x, [f"{lab}\n(n={c})" for lab, c in zip(by_history["labels"], by_history["counts"])])
    ax.set_xlabel("known history length (items)")
    ax.set_ylabel("NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def plot_popularity(pop: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(pop)
    width = 0.8 / max(len(names), 1)
    x = np.arange(10)
    for j, name in enumerate(names):
        ax.bar(x + j * width - 0.4 + width / 2, pop[name]["deciles"], width, label=name)
    ax.set_xticks(x, [f"{10 * d}-{10 * d + 10}%" for d in x], fontsize=7)
    ax.set_xlabel("popularity decile of the recommended item (train+valid interactions)")
    ax.set_ylabel("share of recommendations")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _svg(fig)


def _fmt(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _accuracy_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in TABLE_METRICS)
    body = []
    for r in rows:
        cells = []
        for m in TABLE_METRICS:
            v, sd = r["metrics"].get(m), r.get("std", {}).get(m)
            several = len(r.get("seeds", [])) > 1
            text = _fmt(v) + (f" ± {sd:.4f}" if sd is not None and several else "")
            cells.append(
                f'<td data-model="{html.escape(r["model"])}" data-metric="{m}" data-value="{_fmt(v)}">{text}</td>'
            )
        params = html.escape(json.dumps(r.get("params") or {})) if r.get("params") else "-"
        body.append(
            f'<tr><th scope="row">{html.escape(r["model"])}</th>{"".join(cells)}<td class="p">{params}</td></tr>'
        )
    return f'<table id="accuracy"><tr><th>model</th>{head}<th>params</th></tr>{"".join(body)}</table>'


EXPLANATION_LABELS = {
    "explained_users": "users explained",
    "explained_items": "recommended items explained",
    "completeness_max_abs_error": "completeness: max |sum of evidence - score|",
    "deletion_lowers_score": "deletion: removing the top cited item lowers the score (share)",
    "median_abs_error_claim_vs_drop": "median |claimed contribution - actual drop|",
    "top3_share_of_history_contribution": "top-3 cited items' share of the history contribution",
}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th[scope=row],td.p,td.l{text-align:left}
td.p{font-size:11px;color:#666;max-width:260px}
.ex{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
.hit{background:#e6f5e6}
.muted{color:#666;font-size:13px}
svg{max-width:100%;height:auto}
"""


def render_html(report: dict) -> str:
    """The report as one HTML page with everything inline (SVG plots, CSS, the data as JSON)."""
    meta = report["meta"]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>lucidrec report: {esc(meta['dataset'])} ({esc(meta['protocol'])})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation report: {esc(meta['dataset'])}, protocol <code>{esc(meta['protocol'])}</code></h1>",
        f"<p class='muted'>{meta['users']} users, {meta['items']} items, {meta['interactions']} interactions; "
        f"train/valid/test = {' / '.join(map(str, meta['split_sizes']))}. Seeds {meta['seeds']}, "
        f"LucidRec epochs ≤ {meta['epochs']}. Test part, full ranking (every item not in the user's "
        f"train+valid history is a candidate). Generated {esc(meta['date'])} in {report['seconds']} s.</p>",
        "<h2>Accuracy against the baselines</h2>",
        "<p class='muted'>Baselines tuned on validation and retrained on train+valid; SASRec and LucidRec: "
        "mean ± std over the seeds. Same code path as <code>benchmarks/accuracy.py</code>.</p>",
        _accuracy_table(report["accuracy"]),
    ]
    bh = report["by_history"]
    if bh.get("ndcg"):
        parts += ["<h2>NDCG@10 by history length</h2>", f"<div id='plot-history'>{plot_history(bh)}</div>"]
        head = "".join(f"<th>{esc(lab)} (n={c})</th>" for lab, c in zip(bh["labels"], bh["counts"]))
        rows = "".join(
            f"<tr><th scope='row'>{esc(n)}</th>" + "".join(f"<td>{_fmt(v)}</td>" for v in vals) + "</tr>"
            for n, vals in bh["ndcg"].items()
        )
        parts.append(f"<table id='by-history'><tr><th>model</th>{head}</tr>{rows}</table>")
    pop = report["popularity"]
    if pop:
        parts += [
            "<h2>Popularity and coverage of what is recommended</h2>",
            f"<div id='plot-popularity'>{plot_popularity(pop)}</div>",
            "<table id='popularity'><tr><th>model</th><th>coverage@10</th><th>mean popularity percentile</th>"
            "<th>share from the top-10% popular</th><th>Gini of recommendation counts</th></tr>",
        ]
        for n, p in pop.items():
            parts.append(
                f"<tr><th scope='row'>{esc(n)}</th><td>{_fmt(p['coverage'])}</td>"
                f"<td>{_fmt(p['mean_popularity_percentile'])}</td><td>{_fmt(p['share_top10pct_popular'])}</td>"
                f"<td>{_fmt(p['gini'])}</td></tr>"
            )
        parts.append("</table>")
    ex = report["explanations"]
    if ex:
        parts += [
            "<h2>Explanations (LucidRec)</h2>",
            "<p class='muted'>Measured by re-scoring through the model, not asserted: each recommended item's "
            "evidence is checked against its score, and its top cited history item is removed to see the "
            "score drop.</p><table id='explanations'>",
        ]
        for key, v in ex.items():
            label = EXPLANATION_LABELS.get(key, key.replace("_", " "))
            val = str(v) if isinstance(v, int) else _fmt(v, 6 if "error" in key else 4)
            parts.append(f"<tr><td class='l'>{esc(label)}</td><td data-key='{esc(key)}'>{val}</td></tr>")
        parts.append("</table>")
    if report["examples"]:
        parts.append("<h2>Example recommendations</h2>")
        for e in report["examples"]:
            recent = "; ".join(esc(t) for t in e["recent_history"])
            held = "; ".join(esc(t) for t in e["held_out"]) or "-"
            items = "".join(
                f"<li class='{'hit' if r['held_out'] else ''}'><b>{esc(r['title'])}</b> "
                f"<span class='muted'>(score {r['score']:.3f})</span><br>{esc(r['reason'])}</li>"
                for r in e["recommendations"]
            )
            parts.append(
                f"<div class='ex'><b>User {esc(e['user'])}</b> ({e['history_size']} known items). "
                f"Most recent: {recent}.<br>Held-out test item: {held}.<ol>{items}</ol></div>"
            )
    data = json.dumps(report).replace("<", "\\u003c")  # no "</script>" or markup inside the JSON
    parts += [f'<script type="application/json" id="report-data">{data}</script>', "</body></html>"]
    return "\n".join(parts)


def write_report(
    data: str = "ml-100k", protocol: str = "loo", out: str | Path = "report.html", **options
) -> tuple[Path, dict]:
    """Load ``data``, measure (see :func:`build_report`), write the page; returns its path and the data."""
    from lucidrec.data import load_dataset

    _pyplot()  # fail before minutes of training, not after
    report = build_report(load_dataset(data), protocol, **options)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path, report


__all__ = [
    "build_report",
    "report_from_comparison",
    "explanation_metrics",
    "history_bins",
    "popularity_stats",
    "render_html",
    "write_report",
]
