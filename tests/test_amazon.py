"""Amazon review folders (``NAME.inter.json`` + ``NAME.item.json``): loading, text cleaning, implicit feedback.

Small generated folders test the layout's rules; the real catalogues in ``../shared/datasets`` (never
copied into the project) are checked end to end when that folder exists, and skipped with a reason when not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lucidrec.data import ItemTextBuilder, clean_text, load_dataset
from lucidrec.data.loaders import load_amazon, split_category_path
from lucidrec.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SCIENTIFIC = SHARED / "amazon18-scientific"
OFFICE = SHARED / "amazon14-office"
needs_scientific = pytest.mark.skipif(
    not (SCIENTIFIC / "Scientific.inter.json").exists(), reason=f"{SCIENTIFIC} is absent (shared datasets not mounted)"
)
needs_office = pytest.mark.skipif(
    not (OFFICE / "Office.inter.json").exists(), reason=f"{OFFICE} is absent (shared datasets not mounted)"
)


def write_amazon(folder: Path, inter: dict, items: dict, name: str = "Shop") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(inter))
    (folder / f"{name}.item.json").write_text(json.dumps(items))
    return folder


ITEMS = {
    "0": {
        "title": "Stanley Staples, Steel (1000 Count).",
        "description": "Heavy &amp; duty <b>staples</b>.<!-- Begin A+ Content -->",
        "brand": "Stanley",
        "categories": "Industrial & Scientific,Fasteners,Staples",
    },
    "1": {
        "title": "Industrial & Scientific />.",
        "description": "Steel blue layout fluid.",
        "brand": "Dykem",
        "categories": "Industrial & Scientific,Lab & Scientific Products,Lab Chemicals",
    },
    "2": {
        "title": "HATCHBOX PLA Filament",
        "description": "",
        "brand": "HATCHBOX",
        "categories": "Industrial & Scientific,Tapes, Adhesives & Sealants,Duct Tape",
    },
    "3": {"title": "Mystery part", "description": "", "brand": "", "categories": ""},
}
INTER = {"7": ["0", "2", "1"], "8": ["3", "0"], "9": ["1", "2", "3", "0"]}


def test_generated_folder_loads_as_implicit_feedback(tmp_path):
    ds = load_dataset(write_amazon(tmp_path / "shop", INTER, ITEMS))
    assert (ds.name, ds.n_users, ds.n_items, len(ds)) == ("Shop", 3, 4, 9)
    assert ds.feedback == "implicit" and not ds.has_ratings and ds.default_event == "purchased"
    u9 = ds.interactions[ds.interactions.user == "9"].sort_values("timestamp")
    assert u9["item"].tolist() == ["1", "2", "3", "0"]  # positions are the time, oldest first
    assert u9["timestamp"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert set(ds.interactions["event"]) == {"purchased"}


def test_fields_text_and_cleaning(tmp_path):
    ds = load_amazon(write_amazon(tmp_path / "shop", INTER, ITEMS))
    assert ds.schema.categorical == ["brand", "category_1", "category_2", "category_3"]
    assert ds.schema.path == ["category_1", "category_2", "category_3"]
    row = ds.items.set_index("item")
    # a comma inside a category name stays in the name ("Tapes, Adhesives & Sealants")
    assert row.loc["2", "category_2"] == ["Tapes, Adhesives & Sealants"]
    assert row.loc["3", "brand"] == [] and row.loc["3", "category_1"] == []
    titles = dict(zip(ds.item_ids, ds.titles()))
    assert titles["0"] == "Stanley Staples, Steel (1000 Count)"
    assert titles["1"] == "Dykem Lab Chemicals"  # the scraped placeholder title is replaced
    text = dict(zip(ds.item_ids, ItemTextBuilder().build(ds)))
    assert text["0"] == (
        "Stanley Staples, Steel (1000 Count). Brand: Stanley. "
        "Category: Industrial & Scientific > Fasteners > Staples. Heavy & duty staples."
    )
    assert "/>" not in text["1"] and "&amp;" not in " ".join(text.values())


def test_text_is_cut_within_the_limit(tmp_path):
    items = {k: dict(v) for k, v in ITEMS.items()}
    items["0"]["description"] = "word " * 400
    ds = load_amazon(write_amazon(tmp_path / "shop", INTER, items))
    text = ItemTextBuilder(max_chars=300).build(ds)[0]
    assert len(text) == 300 and text.startswith("Stanley Staples")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("AT&amp;T 210 Phone", "AT&T 210 Phone"),
        ("Industrial &amp;amp; Scientific />.", "Industrial & Scientific"),
        ("a <br/>b <!--[if lte IE 8]><![endif]--> c", "a b c"),
        ("range < 1000C : 0.1C/F / K >", "range < 1000C : 0.1C/F / K >"),  # not a tag: kept
        (None, ""),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_category_separator_is_read_from_the_data():
    assert split_category_path("Office Electronics, Telephones & Accessories, Cordless Telephones", ", ") == [
        "Office Electronics",
        "Telephones & Accessories",
        "Cordless Telephones",
    ]
    long = "A,B," + "x" * 80 + ",C"
    assert split_category_path(long, ",") == ["A", "B"]  # scraped prose ends the path


@pytest.mark.parametrize(
    "inter, items, message",
    [
        ({"1": "0"}, ITEMS, "not a list of item ids"),
        ({"1": ["0", "99"]}, ITEMS, "item '99', which is not in the item table"),
        ({"1": ["0"]}, {"0": "Stanley"}, "not an object"),
        ([], ITEMS, "must be a JSON object"),
    ],
)
def test_bad_folders_give_clear_errors(tmp_path, inter, items, message):
    with pytest.raises(DataError, match=message):
        load_dataset(write_amazon(tmp_path / "bad", inter, items))


def test_missing_item_file_is_named(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "Half.inter.json").write_text(json.dumps(INTER))
    with pytest.raises(DataError, match="Half.item.json"):
        load_dataset(folder)


# ---------------------------------------------------------------------------------------------- real data
@needs_scientific
def test_scientific_loads_as_documented():
    ds = load_dataset(str(SCIENTIFIC))
    assert (ds.n_users, ds.n_items, len(ds)) == (8317, 4344, 58492)
    assert ds.feedback == "implicit"
    brands = {b for bs in ds.items["brand"] for b in bs}
    assert {"HATCHBOX", "Hillman", "Stanley", "3M"} <= brands
    level2 = {v for vs in ds.items["category_2"] for v in vs}
    assert "Tapes, Adhesives & Sealants" in level2 and "Tapes" not in level2
    titles = ds.titles()
    assert not any("/>" in t or "&amp;" in t for t in titles)
    assert not any(t == "Industrial & Scientific" for t in titles)
    texts = ItemTextBuilder().build(ds)
    assert max(len(t) for t in texts) <= 512


@needs_office
def test_office_loads_with_a_relative_path(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    ds = load_dataset("../shared/datasets/amazon14-office")
    assert (ds.n_users, ds.n_items, len(ds)) == (4905, 2420, 53258)
    level1 = {v for vs in ds.items["category_1"] for v in vs}
    assert "Office Electronics" in level1 and not any(v.startswith(" ") for v in level1)
