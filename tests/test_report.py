"""``lucidrec report``: the page renders in headless Chromium, loads nothing from outside, and its
accuracy numbers are the accuracy benchmark's for the same data and settings."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from conftest import make_tiny_frames  # noqa: E402

from lucidrec.baselines import EASE  # noqa: E402
from lucidrec.comparison import per_user  # noqa: E402
from lucidrec.data import from_dataframes  # noqa: E402
from lucidrec.evaluate import evaluate_scorer  # noqa: E402
from lucidrec.report import history_bins, popularity_stats, render_html  # noqa: E402
from lucidrec.splits import split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("LUCIDREC_CHROMIUM", "/usr/bin/chromium"))
MODELS = ["MostPopular", "EASE", "SASRec", "LucidRec"]


def _bigger_frames():
    """Tiny frames, three times over (90 users), so every model has something to learn."""
    import pandas as pd

    frames = [make_tiny_frames(seed) for seed in (7, 8, 9)]
    inter = pd.concat([f[0].assign(user=f[0]["user"] + f"_{k}") for k, f in enumerate(frames)], ignore_index=True)
    return inter, frames[0][1]


@pytest.mark.parametrize("protocol", ["loo", "cold"])
def test_per_user_ndcg_matches_the_evaluator(protocol):
    inter, items = _bigger_frames()
    ds = from_dataframes(inter, items, name="tiny")
    s = split(ds, protocol)
    scorer = EASE(reg=10.0).fit(ds, s.train_valid())
    pu = per_user(scorer, s, 10)
    assert np.isclose(pu.ndcg.mean(), evaluate_scorer(scorer, s)["ndcg@10"])
    assert len(pu.users) == len(pu.history_length) == len(pu.top)
    if protocol == "cold":  # only held-out items are recommended
        assert set(pu.top[pu.top >= 0].ravel()) <= set(s.cold_items)


def test_history_bins_and_popularity_by_hand():
    from lucidrec.comparison import PerUser

    pu = PerUser(
        np.arange(4),
        np.array([0.0, 1.0, 0.5, 0.5]),
        np.array([1, 1, 9, 9]),
        np.array([[0, 1], [0, 2], [0, 1], [0, -1]]),
    )
    bins = history_bins({"M": pu}, n_bins=2)
    assert bins["counts"] == [2, 2] and bins["ndcg"]["M"] == [0.5, 0.5]
    pop = popularity_stats({"M": pu}, np.array([10, 5, 1, 0]), n_candidates=4)["M"]
    assert pop["coverage"] == 0.75  # items 0, 1, 2 recommended
    assert np.isclose(sum(pop["deciles"]), 1.0)
    assert pop["share_top10pct_popular"] == 4 / 7  # item 0 (the most popular) is 4 of the 7 slots


@pytest.fixture(scope="module")
def report_and_benchmark(tmp_path_factory):
    """The same tiny CSV through the benchmark script and through the CLI command."""
    from typer.testing import CliRunner

    from lucidrec.cli.application import app

    tmp = tmp_path_factory.mktemp("report")
    inter, _ = _bigger_frames()
    csv = tmp / "tiny.csv"
    inter.to_csv(csv, index=False)
    # The script imports its sibling modules (benchmarks/progress.py) as a script run finds them.
    benchmarks_dir = str(ROOT / "benchmarks")
    if benchmarks_dir not in sys.path:
        sys.path.insert(0, benchmarks_dir)
    spec = importlib.util.spec_from_file_location("accuracy_bench", ROOT / "benchmarks" / "accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(
        [
            "--data",
            str(csv),
            "--protocols",
            "loo",
            "--seeds",
            "1",
            "--epochs",
            "2",
            "--models",
            *MODELS,
            "--out",
            str(tmp / "bench"),
            "--report",
            str(tmp / "bench.html"),
        ]
    )
    bench_rows = json.loads((tmp / "bench" / "accuracy_tiny.json").read_text())["rows"]
    html_path = tmp / "report.html"
    res = CliRunner().invoke(
        app,
        [
            "report",
            "--data",
            str(csv),
            "--protocol",
            "loo",
            "--out",
            str(html_path),
            "--seeds",
            "1",
            "--epochs",
            "2",
            "--models",
            ",".join(MODELS),
            "--explain-users",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    return html_path, bench_rows


def test_benchmark_report_has_the_same_table(report_and_benchmark):
    """The benchmark's own --report page (written from its run, no second training) shows its rows."""
    html_path, bench_rows = report_and_benchmark
    page = (html_path.parent / "bench.html").read_text()
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert [r["metrics"] for r in data["accuracy"]] == [r["metrics"] for r in bench_rows]
    for r in bench_rows:
        assert f'data-model="{r["model"]}" data-metric="ndcg@10" data-value="{r["metrics"]["ndcg@10"]:.4f}"' in page


def test_report_page_renders_and_matches_the_benchmark(report_and_benchmark):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found. Fix: apt-get install -y chromium, or set LUCIDREC_CHROMIUM.")
    html_path, bench_rows = report_and_benchmark
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html_path.as_uri())
        cells = page.eval_on_selector_all(
            "#accuracy td[data-metric]", "cs => cs.map(c => [c.dataset.model, c.dataset.metric, c.textContent])"
        )
        svgs = page.eval_on_selector_all("#plot-history svg, #plot-popularity svg", "s => s.length")
        svg_box = page.eval_on_selector("#plot-history svg", "s => s.getBoundingClientRect().height")
        expl = page.eval_on_selector_all(
            "#explanations td[data-key]", "cs => cs.map(c => [c.dataset.key, c.textContent])"
        )
        examples = page.eval_on_selector_all(".ex li", "ls => ls.map(l => l.textContent)")
        browser.close()
    assert not errors, errors
    assert requests == [html_path.as_uri()], requests  # self-contained: nothing else is fetched
    assert svgs == 2 and svg_box > 50
    shown = {(m, k): text for m, k, text in cells}
    assert {m for m, _ in shown} == set(MODELS)
    for row in bench_rows:  # every number of the page's table is the benchmark's, to the printed digits
        for key in ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "coverage@10"):
            printed = shown[(row["model"], key)].split(" ± ")[0]
            assert printed == f"{row['metrics'][key]:.4f}", (row["model"], key, printed)
    expl = dict(expl)
    assert float(expl["completeness_max_abs_error"]) < 1e-3  # the evidence sums to the score
    assert 0.0 <= float(expl["deletion_lowers_score"]) <= 1.0
    assert examples and all(len(t) > 10 for t in examples)


def test_render_html_escapes_and_embeds_the_data():
    report = {
        "meta": {
            "dataset": "<x>",
            "users": 1,
            "items": 2,
            "interactions": 3,
            "protocol": "loo",
            "split_sizes": [1, 1, 1],
            "seeds": [2026],
            "epochs": 1,
            "k": 10,
            "date": "today",
        },
        "accuracy": [{"model": "A</script>", "protocol": "loo", "metrics": {"ndcg@10": 0.5}}],
        "by_history": {"edges": [], "counts": [], "ndcg": {}},
        "popularity": {},
        "explanations": {},
        "examples": [],
        "seconds": 0.1,
    }
    page = render_html(report)
    assert "<x>" not in page and "&lt;x&gt;" in page
    assert page.count("</script>") == 1  # the embedded JSON cannot close its script tag early
    data = page.split('id="report-data">')[1].split("</script>")[0]
    assert json.loads(data)["accuracy"][0]["metrics"]["ndcg@10"] == 0.5


def test_report_cli_error_is_clean(tmp_path):
    from typer.testing import CliRunner

    from lucidrec.cli.application import app

    res = CliRunner().invoke(
        app, ["report", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r.html")]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["report", "--models", "EASE", "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "LucidRec" in res.output
