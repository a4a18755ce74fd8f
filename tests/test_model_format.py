"""Model folders written before the trained-model artifact (issue 25) still load and serve the same.

``tests/data/model_v1_shop`` was written by lucidrec at commit fe01c5b (``Recommender.fit`` on the generated
shop of test_product_queries: named fields, a category path, prices and weights, implicit feedback; saved
without the ONNX encoder and without the request understanding, to keep the folder small), and
``model_v1_shop_expected.json`` holds what that code recommended from it: items, scores and reasons (with
verified counterfactuals) for three known users and one inline history.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lucidrec import Recommender
from lucidrec.artifact import TrainedModel

DATA = Path(__file__).parent / "data"
FOLDER = DATA / "model_v1_shop"


@pytest.fixture(scope="module")
def old_folder(tmp_path_factory):
    """A private copy (a load must not depend on, or touch, the checked-in files)."""
    return shutil.copytree(FOLDER, tmp_path_factory.mktemp("v1") / "model")


def _items(result):
    return [[it["item_id"], it["score"], it["reason"]] for it in result["items"]]


def test_an_old_folder_loads_into_the_artifact_with_its_whole_catalogue(old_folder):
    rec = Recommender.load(old_folder, load_encoder=False)
    assert isinstance(rec.model, TrainedModel)
    cat = rec.model.catalogue
    items = json.loads((old_folder / "items.json").read_text())
    assert list(cat.item_ids) == items["item"] and list(cat.titles) == items["title"]
    assert cat.fields is not None and set(cat.fields) == set(items["fields"])
    assert set(cat.numeric) == {"price", "weight"}
    assert cat.implicit_event == json.loads((old_folder / "config.json").read_text())["implicit_event"]
    assert cat.vocabulary is not None and cat.name == "shop"


def test_an_old_folder_recommends_what_it_did_before(old_folder):
    expected = json.loads((DATA / "model_v1_shop_expected.json").read_text())
    rec = Recommender.load(old_folder, load_encoder=False)
    for user in ("u0", "u1", "u10"):
        got = rec.recommend(user=user, k=5, explain=True, counterfactual=True)
        assert _items(got) == expected[user], user
    inline = rec.recommend(history=[str(rec.item_ids[0]), str(rec.item_ids[3])], k=5, explain=True)
    assert _items(inline) == expected["inline"]


def test_an_old_folder_saved_again_is_the_same_model(old_folder, tmp_path):
    rec = Recommender.load(old_folder, load_encoder=False)
    again = Recommender.load(rec.save(tmp_path / "again", export_encoder=False), load_encoder=False)
    assert (tmp_path / "again" / "items.json").read_text() == (old_folder / "items.json").read_text()
    vocab_old, vocab_new = (json.loads((d / "vocabulary.json").read_text()) for d in (old_folder, tmp_path / "again"))
    vocab_old.pop("sources"), vocab_new.pop("sources")  # where it was read from (a path, once loaded)
    assert vocab_new == vocab_old
    old_meta = json.loads((old_folder / "config.json").read_text())
    new_meta = json.loads((tmp_path / "again" / "config.json").read_text())
    # Config fields added after the folder was written (issue 28's transformer term) are saved at their
    # defaults, which give the model the folder holds (no term); nothing else changes.
    for key, default in {"transformer": None, "transformer_minutes": 5.0}.items():
        assert key not in old_meta["config"] and new_meta["config"].pop(key) == default
    assert new_meta == old_meta
    assert _items(again.recommend(user="u1", k=5, explain=True)) == _items(rec.recommend(user="u1", k=5, explain=True))
