"""Training and evaluating on tiny data ends in a clear error or a trained model, never a missing
metric (issue 16, item 8: ``lucidrec train`` on a 3-row CSV raised ``KeyError: 'ndcg@10'``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import lucidrec.data
from lucidrec.cli.application import app
from lucidrec.errors import DataError
from lucidrec.training import holdout

runner = CliRunner()


def write_csv(path, rows) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


THREE_ROWS = [
    {"user": 1, "item": 10, "rating": 5},
    {"user": 1, "item": 11, "rating": 4},
    {"user": 2, "item": 10, "rating": 3},
]  # noqa: E501
ONE_ITEM = [{"user": f"u{u}", "item": 7, "rating": 5} for u in range(6)]
ONE_ROW_PER_USER = [{"user": f"u{u}", "item": u, "rating": 4} for u in range(20)]


@pytest.mark.parametrize("rows", [THREE_ROWS, ONE_ITEM, ONE_ROW_PER_USER], ids=["3-rows", "1-item", "no-valid-users"])
@pytest.mark.parametrize("protocol", ["ratio", "loo"])
def test_train_on_tiny_data_is_a_clear_error(tmp_path, rows, protocol):
    data = write_csv(tmp_path / "tiny.csv", rows)
    res = runner.invoke(app, ["train", "--data", data, "--protocol", protocol, "--out", str(tmp_path / "m"), "--quiet"])
    text = one_line(res.output)
    assert res.exit_code == 2, text
    assert "too little data to train on" in text and "Fix:" in text, text
    assert "KeyError" not in text and "Traceback" not in text, text
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert not (tmp_path / "m").exists()


def test_evaluate_on_tiny_data_is_a_clear_error(tmp_path):
    data = write_csv(tmp_path / "tiny.csv", THREE_ROWS)
    res = runner.invoke(app, ["evaluate", "--data", data, "--model", "ease"])
    text = one_line(res.output)
    assert res.exit_code == 2, text
    assert "the valid part of the 'ratio' split has no users" in text and "Fix:" in text, text


def test_fit_with_a_one_item_catalog_is_a_clear_error():
    from lucidrec.recommender import Recommender

    ds = lucidrec.data.from_dataframes(pd.DataFrame(ONE_ITEM), name="one-item")
    train, valid = ds.interactions.iloc[:4], ds.interactions.iloc[4:]
    with pytest.raises(DataError, match="the catalog has 1 item"):
        Recommender().fit(ds, train, valid, progress=False)


def test_holdout_keeps_at_least_one_validation_row_when_it_can():
    ds = lucidrec.data.from_dataframes(
        pd.DataFrame([{"user": "solo", "item": i, "rating": 4, "timestamp": i} for i in range(8)]), name="solo"
    )
    for seed in range(20):  # 5% of 8 rows is usually none
        train, valid = holdout(ds.interactions, seed)
        assert len(valid) >= 1 and len(train) + len(valid) == 8
    small = lucidrec.data.from_dataframes(pd.DataFrame(THREE_ROWS), name="small")
    assert len(holdout(small.interactions, 0)[1]) == 0  # no user has 5 rows: nothing can be held out


def test_one_user_trains_a_model_that_recommends(tmp_path):
    """The smallest data that can be trained on: one user, twelve items (loo holds one out)."""
    rows = [{"user": "solo", "item": i, "rating": 1 + i % 5, "timestamp": i} for i in range(12)]
    data = write_csv(tmp_path / "solo.csv", rows)
    out = tmp_path / "m"
    args = ["train", "--data", data, "--protocol", "loo", "--epochs", "2", "--dim", "8", "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, one_line(res.output)
    res = runner.invoke(app, ["recommend", "--model", str(out), "--user", "solo", "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert [r["item_id"] for r in got["items"]] == ["11"]  # the only item outside the known history
