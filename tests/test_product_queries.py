"""Queries over any catalogue: brands, category-path levels, numbers with units, negations, item
references, and the per-catalogue vocabulary files (no domain words in the parser's core).

Parsing runs on small generated product catalogues (with a price and a weight, which the Amazon files here
lack) and, when ``../shared/datasets`` is present, on the real Industrial & Scientific catalogue.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_amazon import SCIENTIFIC, needs_scientific, write_amazon

import lucidrec.data
from lucidrec.errors import ModelError
from lucidrec.query import QueryParser
from lucidrec.query_synonyms import Vocabulary, packaged_files, read_vocabulary, vocabulary_for

BRANDS = ["HATCHBOX", "eSUN", "Hillman", "Stanley", "Duck"]
PATHS = [
    ["Industrial & Scientific", "Additive Manufacturing Products", "3D Printing Filament"],
    ["Industrial & Scientific", "Fasteners", "Staples"],
    ["Industrial & Scientific", "Tapes, Adhesives & Sealants", "Duct Tape"],
    ["Industrial & Scientific", "Lab & Scientific Products", "Beakers"],
]


def product_frames(n_items: int = 60, seed: int = 3):
    """A product catalogue: brand, a 3-level category path, a price in dollars and a weight in pounds."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_items):
        brand, path = BRANDS[i % len(BRANDS)], PATHS[(i // len(BRANDS)) % len(PATHS)]
        items.append(
            {
                "item": f"p{i}",
                "title": f"{brand} {path[-1]} model {i}",
                "brand": brand,
                "category_1": path[0],
                "category_2": path[1],
                "category_3": path[2],
                "price": float(5 + 3 * i),  # 5 .. 182 dollars
                "weight": float(0.25 * (i % 12) + 0.5),  # 0.5 .. 3.25 lb
                "description": f"A {path[-1].lower()} made by {brand}.",
            }
        )
    rows = [
        {"user": f"u{u}", "item": f"p{int(j)}", "timestamp": t}
        for u in range(40)
        for t, j in enumerate(rng.choice(n_items, size=6, replace=False))
    ]
    return pd.DataFrame(rows), pd.DataFrame(items)


def shop_dataset() -> lucidrec.data.Dataset:
    """:func:`product_frames` as a Dataset with named fields: brand, a 3-level category path, price, weight."""
    inter, items = product_frames()
    items = items.copy()
    for c in ("brand", "category_1", "category_2", "category_3"):
        items[c] = items[c].map(lambda v: [v])  # one value each (a plain string would be split on spaces)
    schema = lucidrec.data.ItemSchema(
        title="title",
        text=["description"],
        categorical=["brand", "category_1", "category_2", "category_3"],
        numeric=["price", "weight"],
        path=["category_1", "category_2", "category_3"],
    )
    return lucidrec.data.from_dataframes(inter, items, schema=schema, name="shop")


@pytest.fixture(scope="module")
def shop():
    ds = shop_dataset()
    return ds, product_frames()[1], QueryParser.from_dataset(ds)


def _items_of(parser, pq) -> set[int]:
    masks = [m for _, m in parser.constraint_masks(pq)]
    return set(np.flatnonzero(np.logical_and.reduce(masks))) if masks else set(range(len(parser.titles)))


@pytest.mark.parametrize(
    "query, field, lo, hi",
    [
        ("staples under $30", "price", None, 30.0),
        ("filament for less than 50 dollars", "price", None, 50.0),
        ("beakers between $10 and $20", "price", 10.0, 20.0),
        ("duct tape $20-$40", "price", 20.0, 40.0),
        ("staples over $100", "price", 100.0, None),
        ("price under 25", "price", None, 25.0),
        ("30美元以下的胶带", "price", None, 30.0),
        ("低于40元的订书钉", "price", None, 40.0),
        ("filament lighter than 1 kg", "weight", None, 2.20462),
        ("staples under 2 lbs", "weight", None, 2.0),
        ("beakers around $50", "price", 40.0, 60.0),
        # a negated one-sided bound is the other side, not an exclusion (and not dropped)
        ("staples, not over $50", "price", None, 50.0),
        ("staples but nothing over $50", "price", None, 50.0),
        ("not under $30 staples", "price", 30.0, None),
        ("不要超过30美元的订书钉", "price", None, 30.0),
        ("staples no more than $50", "price", None, 50.0),
    ],
)
def test_numbers_with_units(shop, query, field, lo, hi):
    ds, items, parser = shop
    pq = parser.parse(query)
    assert list(pq.ranges) == [field], (pq.ranges, pq.notes)
    got_lo, got_hi = pq.ranges[field]
    assert (got_lo is None) == (lo is None) and (got_hi is None) == (hi is None)
    if lo is not None:
        assert got_lo == pytest.approx(lo)
    if hi is not None:
        assert got_hi == pytest.approx(hi)
    values = items[field].to_numpy()
    for i in _items_of(parser, pq):
        assert (lo is None or values[i] >= lo - 1e-9) and (hi is None or values[i] <= hi + 1e-9)
    assert "$" not in pq.text and not any(ch.isdigit() for ch in pq.text), pq.text


def test_cheap_and_expensive_are_catalogue_quartiles(shop):
    ds, items, parser = shop
    prices = items["price"].to_numpy()
    cheap = parser.parse("cheap filament")
    assert cheap.ranges["price"] == [None, round(float(np.percentile(prices, 25)), 2)]
    pricey = parser.parse("便宜的胶带")
    assert pricey.ranges["price"][1] == cheap.ranges["price"][1]
    assert parser.parse("an expensive beaker").ranges["price"][0] == round(float(np.percentile(prices, 75)), 2)


def test_range_nobody_meets_is_dropped_with_a_note(shop):
    _, _, parser = shop
    pq = parser.parse("staples under $1")
    assert pq.ranges == {} and any("no item has a price" in n for n in pq.notes)


def test_a_bare_number_is_not_a_price_when_fields_are_ambiguous(shop):
    _, _, parser = shop
    pq = parser.parse("a 2-3 pack of staples")
    assert pq.ranges == {}


@pytest.mark.parametrize(
    "query, required, excluded",
    [
        ("HATCHBOX filament not from Hillman", [{"HATCHBOX"}, {"3D Printing Filament"}], {"Hillman"}),
        ("HATCHBOX or eSUN filament", [{"HATCHBOX", "eSUN"}, {"3D Printing Filament"}], set()),
        ("不要HATCHBOX的3D打印耗材", [{"3D Printing Filament"}], {"HATCHBOX"}),
        ("Stanley staples, no Hillman", [{"Stanley"}, {"Staples"}], {"Hillman"}),
        ("lab and scientific products", [{"Lab & Scientific Products"}], set()),
        ("a beaker", [{"Beakers"}], set()),
        ("Duck tape", [{"Duct Tape"}], set()),
    ],
)
def test_brands_categories_and_negations(shop, query, required, excluded):
    _, items, parser = shop
    pq = parser.parse(query)
    cons = [c for c, _ in parser.constraint_masks(pq)]
    groups = [set(c["value"]) if isinstance(c["value"], list) else {c["value"]} for c in cons if "genre" in c["type"]]
    groups = [g for g, c in zip(groups, [c for c in cons if "genre" in c["type"]]) if c["type"] != "exclude_genre"]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, required))
    assert set(pq.exclude_genres) == excluded
    assert all("field" in c for c in cons if c["type"] != "range")
    for i in _items_of(parser, pq):
        row = items.iloc[i]
        values = {row["brand"], row["category_1"], row["category_2"], row["category_3"]}
        assert all(values & g for g in required) and not values & excluded


def test_ordinary_words_are_not_brands_unless_typed_as_one(shop):
    _, _, parser = shop
    assert parser.parse("a duck").genres == []
    assert parser.parse("Duck staples").genres == ["Duck", "Staples"]


def test_item_reference_by_a_few_title_words(shop):
    _, _, parser = shop
    pq = parser.parse("something like the Stanley staples model 8")
    assert pq.like_titles == ["Stanley Staples model 8"]
    pq = parser.parse("like the Stanley staples")  # words of the title, not all of it: the most popular match
    assert len(pq.like_titles) == 1 and pq.like_titles[0].startswith("Stanley Staples model")
    pq = parser.parse("like the eSUN filament")
    assert len(pq.like_titles) == 1 and pq.like_titles[0].startswith("eSUN 3D Printing Filament")
    assert pq.genres == []  # the words named an item; they are not constraints


def test_negated_words_outside_the_vocabulary_are_not_embedded(shop):
    _, _, parser = shop
    pq = parser.parse("beakers, not plastic")
    assert pq.genres == ["Beakers"] and "plastic" not in pq.text
    assert any("could not be excluded" in n for n in pq.notes)


# ---------------------------------------------------------------------------------------------- vocabulary
def test_no_domain_words_in_the_core():
    """With an empty vocabulary, film words are ordinary words: they live in ml-100k.json, not in code."""
    parser = QueryParser([["Comedy"], ["Drama"]], ["A", "B"], ["1", "2"], [1990, 1991], vocabulary=Vocabulary())
    assert parser.parse("a funny movie").text == "a funny movie"
    film = vocabulary_for("ml-100k")
    assert "movie" in film.stop_en and "电影" in film.stop_zh and film.synonyms["zh"]["喜剧"] == "Comedy"
    assert "movie" not in vocabulary_for("Scientific").stop_en


def test_vocabulary_files_are_found_by_name_or_borrowed_by_values():
    assert vocabulary_for("ml-100k").sources == ["default", "ml-100k"]
    assert vocabulary_for("Scientific").sources == ["default", "scientific"]
    assert vocabulary_for("Office").sources == ["default", "office"]
    assert vocabulary_for("my films", ["Comedy", "Drama", "Horror", "Romance"]).sources == ["default", "ml-100k"]
    assert vocabulary_for("shop", ["Brand A", "Widgets"]).sources == ["default"]
    assert set(packaged_files()) >= {"default", "ml-100k", "scientific", "office"}


def test_bad_vocabulary_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "vocabulary.json"
    bad.write_text(json.dumps({"synonyms": {"en": {"funny": 3}}}))
    with pytest.raises(ModelError, match="synonyms.en must map a phrase"):
        read_vocabulary(bad)
    bad.write_text("{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_vocabulary(bad)


# ---------------------------------------------------------------------------------------------- real data
@needs_scientific
def test_scientific_vocabulary_targets_exist_and_key_queries_parse():
    ds = lucidrec.data.load_dataset(str(SCIENTIFIC))
    parser = QueryParser.from_dataset(ds)
    assert parser.vocab.sources == ["default", "scientific"]
    for lang, table in parser.vocab.synonyms.items():
        missing = [t for t in table.values() if t not in parser._value_masks]
        assert not missing, (lang, missing)
    pq = parser.parse("HATCHBOX filament not from Hillman")
    assert pq.genres == ["HATCHBOX", "3D Printing Filament"] and pq.exclude_genres == ["Hillman"]
    assert pq.fields == {"HATCHBOX": "brand", "3D Printing Filament": "category_4", "Hillman": "brand"}
    assert parser.parse("不要HATCHBOX的").exclude_genres == ["HATCHBOX"]
    assert parser.parse("like the Stanley staples").like_titles[0].startswith("Stanley")
    assert parser.parse("烧杯").genres == ["Beakers"]
    # a negated modifier of an asked-for value names a narrower value, which is excluded
    assert parser.parse("thermometers, but not infrared ones").exclude_genres == ["Infrared Thermometers"]
    assert parser.numeric == {}  # the Amazon files have no price or weight field


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def product_model(tmp_path_factory):
    pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    inter, items = product_frames()
    seqs = {u: g.sort_values("timestamp")["item"].tolist() for u, g in inter.groupby("user")}
    meta = {
        r.item: {
            "title": r.title,
            "description": r.description,
            "brand": r.brand,
            "categories": f"{r.category_1},{r.category_2},{r.category_3}",
        }
        for r in items.itertuples()
    }
    folder = write_amazon(tmp_path_factory.mktemp("shopdata") / "shop", seqs, meta, name="Shop")
    ds = lucidrec.data.load_dataset(folder)
    cache = str(tmp_path_factory.mktemp("pcache"))
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache).fit(ds, progress=False)
    out = rec.save(tmp_path_factory.mktemp("pmodel") / "shop")
    return Recommender.load(out), out, ds


def test_implicit_model_reasons_say_bought(product_model):
    rec, out, ds = product_model
    assert rec.implicit_event == "purchased"
    assert json.loads((Path(out) / "config.json").read_text())["implicit_event"] == "purchased"
    hist = "p0,p5,p10"
    res = rec.recommend(history=hist, k=5, explain=True)
    cited = [e for it in res["items"] for e in it["evidence"] if e["kind"] == "history"]
    assert cited and all(e["action"] == "bought" for e in cited)
    assert any("you bought" in it["reason"] for it in res["items"])
    zh = rec.recommend(history=hist, k=5, explain=True, lang="zh")
    assert any("基于您购买过的《" in it["reason"] for it in zh["items"])
    # an inline item weighs as every training interaction did (no rating scale on implicit data)
    entries, _ = rec.resolve_history(history="p0:5")
    assert entries[0].rating is None and entries[0].event == "purchased"


def test_implicit_model_queries_respect_constraints(product_model):
    rec, out, ds = product_model
    assert (Path(out) / "vocabulary.json").exists()
    res = rec.recommend(history="p5,p10", query="HATCHBOX filament not from Hillman", k=3, explain=True)
    pq = res["parsed_query"]
    assert pq["genres"] == ["HATCHBOX", "3D Printing Filament"] and pq["exclude_genres"] == ["Hillman"]
    brand = dict(zip(ds.item_ids, ds.items["brand"]))
    cat = dict(zip(ds.item_ids, ds.items["category_3"]))
    for it in res["items"]:
        assert brand[it["item_id"]] == ["HATCHBOX"] and cat[it["item_id"]] == ["3D Printing Filament"]
        assert "It fits your request: not Hillman, HATCHBOX, 3D Printing Filament." in it["reason"]


def test_model_folder_vocabulary_is_editable(product_model, tmp_path):
    import shutil

    from lucidrec.recommender import Recommender

    _, out, _ = product_model
    copy = tmp_path / "edited"
    shutil.copytree(out, copy)
    vocab = json.loads((copy / "vocabulary.json").read_text())
    vocab["synonyms"].setdefault("en", {})["sticky stuff"] = "Duct Tape"
    (copy / "vocabulary.json").write_text(json.dumps(vocab))
    rec = Recommender.load(copy, load_encoder=False)
    assert rec.parse_query("sticky stuff").genres == ["Duct Tape"]


def test_purchase_reasons_read_naturally_in_both_languages():
    from lucidrec.explain import render_reason

    evidence = [
        {"kind": "history", "title": "Duct Tape", "action": "bought", "similarity": 0.8, "contribution": 1.0},
        {"kind": "history", "title": "Staples", "action": "bought", "similarity": 0.5, "contribution": 0.9},
        {"kind": "popularity", "contribution": 0.1},
    ]
    en = render_reason("Glue", evidence, "en")
    assert en.startswith("Recommended Glue because you bought Duct Tape (similarity 0.80) and bought Staples.")
    zh = render_reason("Glue", evidence, "zh")
    assert zh.startswith("推荐《Glue》：基于您购买过的《Duct Tape》、《Staples》，我们推荐您尝试《Glue》。")
