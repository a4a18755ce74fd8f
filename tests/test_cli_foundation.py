"""CLI: evaluate / export-run / split on ML-100K, and friendly errors (exit 2, no traceback)."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise

import pytest
from typer.testing import CliRunner

from lucidrec.cli.application import app
from lucidrec.splits import split

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_evaluate_json():
    res = invoke("evaluate", "--model", "ease", "--param", "reg=300", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["model"] == "EASE"
    assert payload["protocol"] == "ratio"
    assert payload["part"] == "test"
    assert payload["params"] == {"reg": 300}
    assert 0.33 <= payload["metrics"]["ndcg@10"] <= 0.38
    assert payload["metrics"]["users"] == 943


def test_export_run(tmp_path, ml100k, ml100k_ratio):
    out = tmp_path / "run.tsv"
    res = invoke("export-run", "--model", "ease", "--param", "reg=300", "--out", str(out))
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines
    history = defaultdict(set)
    for u, i in zip(ml100k_ratio.train_valid()["user"], ml100k_ratio.train_valid()["item"]):
        history[u].add(i)
    per_user = defaultdict(list)
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 3, line
        user, item, score = fields
        assert item not in history[user], line
        assert item in ml100k.item_index
        per_user[user].append(float(score))
    assert set(per_user) == set(ml100k_ratio.test["user"])
    for user, scores in per_user.items():
        assert len(scores) <= 100
        assert len(scores) == 100  # every ML-100K user has far more than 100 unseen items
        assert all(a >= b for a, b in pairwise(scores)), user
    assert f"wrote {len(lines)} rows" in res.output


def test_split_command(tmp_path):
    res = invoke("split", "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    counts = {}
    for name in ("train", "valid", "test"):
        lines = (tmp_path / "s" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
        assert all(len(line.split("\t")) == 4 for line in lines)
        counts[name] = len(lines)
    assert (counts["train"], counts["valid"], counts["test"]) == (80000, 9988, 10012)
    assert "train 80000, valid 9988, test 10012" in res.stdout


def test_split_command_loo(tmp_path, ml100k):
    res = invoke("split", "--out", str(tmp_path), "--protocol", "loo")
    assert res.exit_code == 0, res.output
    test_lines = (tmp_path / "test.tsv").read_text().splitlines()
    assert len(test_lines) == 943
    want = split(ml100k, "loo").test
    assert [tuple(line.split("\t")[:2]) for line in test_lines] == list(zip(want["user"], want["item"]))


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--param", "reg=300"],
        ["split", "--out", "ignored"],
        ["export-run", "--out", "ignored.tsv", "--param", "reg=300"],
    ],
)
def test_bad_data_path(tmp_path, command):
    bad = tmp_path / "does-not-exist.csv"
    res = invoke(*command, "--data", str(bad))
    assert res.exit_code == 2
    assert "error:" in res.output
    assert "Traceback" not in res.output
    # One line, however long the path (issue 27.3): the error console never folds a message.
    assert any("does-not-exist.csv" in ln and "Fix:" in ln for ln in res.output.splitlines()), res.output
    assert "Fix:" in res.output


def test_unknown_model():
    res = invoke("evaluate", "--model", "nope")
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output
    assert "nope" in res.output


def test_unknown_protocol(tmp_path):
    for args in (["evaluate", "--param", "reg=300"], ["split", "--out", str(tmp_path)]):
        res = invoke(*args, "--protocol", "nope")
        assert res.exit_code == 2, res.output
        assert "error:" in res.output and "Traceback" not in res.output
        assert "nope" in res.output
    assert not (tmp_path / "train.tsv").exists()


def test_bad_param_syntax():
    res = invoke("evaluate", "--param", "reg300")
    assert res.exit_code == 2
    assert "error:" in res.output and "NAME=VALUE" in res.output


@pytest.mark.parametrize(
    "module",
    [
        "lucidrec.cli.evaluate",
        "lucidrec.cli.recommend",
        "lucidrec.service.cli",
        "lucidrec.cli.finetune",
        "lucidrec.cli.batch",
        "lucidrec.cli.report",
        "lucidrec.cli.forget",
        "lucidrec.finetune",
        "lucidrec.batch",
    ],
)
def test_command_modules_do_not_import_the_app(module):
    """No import circle: command modules take shared options from cli.common; only cli.application assembles
    the app (the cli package's own module imports nothing)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('lucidrec.cli.application' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# Every command's errors, each with a path far past any terminal width (issue 27.3).
LONG = "/nonexistent/" + "/".join(["a-long-folder-name-" + "x" * 30] * 5)
ONE_LINE_CASES = {
    "recommend": ["recommend", "--model", LONG, "--user", "1"],
    "serve": ["serve", "--model", LONG],
    "split": ["split", "--data", LONG + "/data.csv", "--out", LONG + "/out"],
    "train": ["train", "--data", LONG + "/data.csv", "--out", LONG + "/m"],
    "forget": ["forget", "u1", "--model", LONG],
    "batch": ["batch", "--model", LONG, "--users", LONG + "/u.parquet", "--out", LONG + "/o.parquet"],
    "usage": ["recommend", "--model", LONG, "--k", "0"],
}


@pytest.mark.parametrize("case", list(ONE_LINE_CASES))
def test_errors_are_one_line_on_a_pipe_whatever_the_path_length(case):
    """A real process with stderr on a pipe: the message is one line, with the whole path and the fix."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "COLUMNS": "80"}
    p = subprocess.run([sys.executable, "-m", "lucidrec.cli", *ONE_LINE_CASES[case]], capture_output=True, text=True,
                       timeout=120, env=env)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1, p.stderr
    if case == "usage":  # click's own usage error, plain on a pipe (no box folding it)
        assert "Invalid value for '--k'" in errors[0] and "│" not in p.stderr, p.stderr
    else:
        assert LONG in errors[0] and "Fix:" in errors[0], p.stderr
