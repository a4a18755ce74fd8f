"""Reasons of the default model (not rating-aware): disliked items still count in its score, so they are
never cited as support and their share is reported as ``low_rated`` in the evidence, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_frames, rank_among

import lucidrec.data
from lucidrec.explain import render_reason
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender
from lucidrec.serving import resolve_history, state_for

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    model = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=str(tmp_path_factory.mktemp("cache")))
    return model.fit(ds, progress=False)


def _low(ratings: list[float]) -> set[int]:
    mean = float(np.mean(ratings))
    return {k for k, r in enumerate(ratings) if r < mean}


def test_the_default_model_is_not_rating_aware(rec):
    assert rec.config.rating_aware is False and rec.scorer.dislike_margin is None


def test_low_rated_items_are_never_cited_and_their_share_is_exact(rec):
    rng = np.random.default_rng(3)
    ids = [str(i) for i in rec.item_ids]
    seen_low_share = 0
    for _ in range(12):
        picked = rng.choice(len(ids), size=8, replace=False)
        ratings = [5.0, 5.0, 4.0, 5.0, 1.0, 1.0, 2.0, 4.0]
        history = [(ids[p], r) for p, r in zip(picked, ratings, strict=True)]
        low_ids = {history[k][0] for k in _low(ratings)}
        res = rec.recommend(history=history, k=5, explain=True)
        state = state_for(rec, resolve_history(rec, None, history)[0], None)
        for item in res["items"]:
            ev = item["evidence"]
            assert sum(e["contribution"] for e in ev if "contribution" in e) == pytest.approx(item["score"], abs=1e-4)
            cited = {e["item_id"] for e in ev if e["kind"] == "history"}
            assert not cited & low_ids
            other = next((e for e in ev if e["kind"] == "history_other"), {})
            parts = rec.scorer.decompose(state, rec.item_idx(item["item_id"]))["history"]
            low_sum = float(sum(parts[k] for k in _low(ratings)))
            if "low_rated" in other:
                seen_low_share += 1
                assert other["low_rated"]["count"] == len(low_ids)
                assert other["low_rated"]["contribution"] == pytest.approx(low_sum, abs=1e-5)
            else:
                assert low_sum <= 1e-6  # reported whenever the low-rated items push the item up
    assert seen_low_share > 0


def _evidence(low: float) -> list[dict]:
    hist = {"kind": "history", "item_id": "1", "title": "A", "action": "rated 5", "rating": 5.0}
    return [
        {**hist, "similarity": 0.8, "contribution": 1.0, "shared": []},
        {"kind": "history_other", "count": 4, "contribution": low, "low_rated": {"count": 3, "contribution": low}},
        {"kind": "popularity", "contribution": 0.1},
    ]


def test_the_reason_tells_a_large_low_rated_share_and_only_then():
    en = render_reason("X", _evidence(1.5), "en")
    assert "Also counted: 3 items you rated below your average" in en and "you rated A 5 stars" in en
    assert "3件物品" in render_reason("X", _evidence(1.5), "zh")
    assert "below your average" not in render_reason("X", _evidence(0.6), "en")
    assert "低于平均" not in render_reason("X", _evidence(0.6), "zh")


def test_products_share_categories_and_films_share_genres():
    hist = {"kind": "history", "item_id": "1", "title": "A", "action": "bought", "rating": None}
    ev = [{**hist, "similarity": 0.9, "contribution": 1.0, "shared": ["3D Printing Filament"]}]
    product = ev + [{"kind": "attribute", "name": "category", "shared": ["3D Printing Filament"]}]
    film = ev + [{"kind": "attribute", "name": "genre", "shared": ["3D Printing Filament"]}]
    assert "Shared categories: 3D Printing Filament." in render_reason("X", product, "en")
    assert "类别" in render_reason("X", product, "zh") and "类型" not in render_reason("X", product, "zh")
    assert "Shared genres: 3D Printing Filament." in render_reason("X", film, "en")


def test_decisive_evidence_is_verified_and_named(rec):
    """With a counterfactual, items marked decisive are at most 3 liked history items pushing the item up,
    whose removal (re-scored here independently) drops the item out of the top-k; the reason names them
    all and says so. A reason without such a set claims nothing of it; a plain explanation has none."""
    rng = np.random.default_rng(11)
    ids = [str(i) for i in rec.item_ids]
    decisive_seen = plain_seen = 0
    k = 5
    for _ in range(15):
        picked = rng.choice(len(ids), size=int(rng.integers(3, 12)), replace=False)
        ratings = rng.integers(1, 6, size=len(picked)).astype(float).tolist()
        history = [(ids[p], r) for p, r in zip(picked, ratings, strict=True)]
        low_ids = {history[j][0] for j in _low(ratings)}
        allowed = np.array([iid not in {h[0] for h in history} for iid in ids])
        plain = rec.recommend(history=history, k=k, explain=True)
        assert not any(e.get("decisive") for it in plain["items"] for e in it["evidence"] if e["kind"] == "history")
        assert not any("would not make this list" in it["reason"] for it in plain["items"])
        res = rec.recommend(history=history, k=k, explain=True, counterfactual=True)
        for item in res["items"]:
            hist_ev = [e for e in item["evidence"] if e["kind"] == "history"]
            dec = [e for e in hist_ev if e["decisive"]]
            zh = render_reason(item["title"], item["evidence"], "zh")
            if not dec:
                plain_seen += 1
                assert "would not make this list" not in item["reason"] and "不会进入" not in zh
                continue
            decisive_seen += 1
            assert len(dec) <= 3 and all(e["contribution"] > 0 and e["item_id"] not in low_ids for e in dec)
            gone = {e["item_id"] for e in dec}
            after = rec.score_items(history=[h for h in history if h[0] not in gone])
            assert rank_among(after, allowed, rec.item_idx(item["item_id"])) > k
            assert all(e["title"] in item["reason"] for e in dec), (item["reason"], dec)
            # the sentence names exactly the decisive items, in the reason's order
            titles = [e["title"] for e in sorted(dec, key=lambda e: item["reason"].index(e["title"]))]
            names = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
            assert f"Without {names}, it would not make this list." in item["reason"], item["reason"]
            assert "没有" + "".join(f"《{t}》" for t in titles) + "，它不会进入本次推荐列表。" in zh, zh
    assert decisive_seen >= 5 and plain_seen >= 1, (decisive_seen, plain_seen)


def test_decisive_sets_are_searched_for_the_head_of_a_long_list_only(rec):
    from lucidrec.explain import DECISIVE_ITEMS

    ids = [str(i) for i in rec.item_ids]
    history = [(ids[j], 5.0) for j in range(4)]
    res = rec.recommend(history=history, k=DECISIVE_ITEMS + 8, explain=True, counterfactual=True)
    assert len(res["items"]) == DECISIVE_ITEMS + 8
    # past the head, an item is decisive only through its own counterfactual (when it is citable)
    for it in res["items"][DECISIVE_ITEMS:]:
        dec = {e["item_id"] for e in it["evidence"] if e["kind"] == "history" and e["decisive"]}
        cf = it["counterfactual"]
        assert not dec or (cf is not None and dec == set(cf["removed"])), (dec, cf)
