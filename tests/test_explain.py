"""Explanations: evidence sums to the score, decomposition is exact, deletion fidelity, counterfactuals, reasons.

One tiny rating-aware model (HybridConfig(epochs=2, dim=8, rating_aware=True)) is trained per module; its
dataset also carries a user table with distinctive attributes so the tests can check reasons never mention them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_frames, rank_among
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lucidrec.data
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender

pytest.importorskip("torch")

QUERIES = [
    "a scary horror film with monsters",
    "funny romantic comedy",
    "space adventure with robots",
    "Item 120",
    "a sad drama about family",
]
EVIDENCE_KINDS = {"history", "history_other", "query", "popularity", "attribute", "constraint"}
#: Values of the user table: none may ever appear in a reason or in the evidence.
USER_ATTRIBUTE_VALUES = ["lighthouse keeper", "Zorbania", "90210", "Xenon"]


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    interactions, items = make_tiny_frames()
    users = pd.DataFrame({"user": sorted(interactions["user"].unique())})
    users["gender"] = ["F" if k % 2 else "M" for k in range(len(users))]
    users["age"] = 34
    users["occupation"] = "lighthouse keeper"
    users["country"] = "Zorbania"
    users["zip_code"] = "90210"
    users["tribe"] = "Xenon"
    ds = lucidrec.data.from_dataframes(interactions, items, users, name="tiny")
    model = Recommender(
        HybridConfig(epochs=2, dim=8, rating_aware=True), cache_dir=str(tmp_path_factory.mktemp("cache"))
    )
    return model.fit(ds, progress=False)


def _users(rec, min_len=2):
    return [u for u in rec._known_users_with_history() if len(rec._known_history(u)) >= min_len]


def _evidence_sum(item):
    return sum(e["contribution"] for e in item["evidence"] if "contribution" in e)


def _stored_history(rec, user):
    return [(str(rec.item_ids[h.item]), h.rating) for h in rec._known_history(user)]


def test_model_is_not_constant(rec):
    """Every other test here is vacuous on a model that scores all items alike."""
    for user in _users(rec, 2)[:5]:
        assert np.ptp(rec.score_items(user=user)) > 1e-4, (user, rec.train_report)
    assert np.ptp(rec.score_items(query=QUERIES[0])) > 1e-4, rec.train_report


# ============================================================== evidence sums to the score
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_evidence_contributions_sum_to_score(rec, data):
    ids = list(rec.item_ids)
    hist_ids = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=15), label="history")
    ratings = data.draw(st.lists(st.integers(1, 5), min_size=len(hist_ids), max_size=len(hist_ids)), label="ratings")
    rated = data.draw(st.lists(st.booleans(), min_size=len(hist_ids), max_size=len(hist_ids)), label="rated")
    query = data.draw(st.one_of(st.none(), st.sampled_from(QUERIES)), label="query")
    k = data.draw(st.integers(1, 10), label="k")
    exclude_seen = data.draw(st.booleans(), label="exclude_seen")
    history = [(i, r if keep else None) for i, r, keep in zip(hist_ids, ratings, rated, strict=True)]
    res = rec.recommend(history=history or None, query=query, k=k, explain=True, exclude_seen=exclude_seen)
    assert res["items"], res
    # titles the query names ("Item 120") join the history as pseudo-history items
    named = set(res.get("parsed_query", {}).get("like", [])) - set(hist_ids)
    n_hist = len(hist_ids) + len(named)
    raw = rec.score_items(history=history or None, query=query)
    for item in res["items"]:
        ev = item["evidence"]
        assert {e["kind"] for e in ev} <= EVIDENCE_KINDS
        assert _evidence_sum(item) == pytest.approx(item["score"], abs=1e-4)
        assert item["score"] == pytest.approx(float(raw[rec.item_idx(item["item_id"])]), abs=1e-5)
        hist_ev = [e for e in ev if e["kind"] == "history"]
        other = [e for e in ev if e["kind"] == "history_other"]
        assert len(hist_ev) <= 5
        assert len(hist_ev) + sum(e["count"] for e in other) == n_hist
        contribs = [e["contribution"] for e in hist_ev]
        assert all(c > 0 for c in contribs) and contribs == sorted(contribs, reverse=True)
        assert {e["item_id"] for e in hist_ev} <= set(hist_ids) | named
        # a disliked item (rated below the history's mean) is never cited as support
        rated = [r for i, r in history if r is not None]
        for e in hist_ev:
            r = dict(history).get(e["item_id"])
            assert r is None or r >= np.mean(rated) - rec.scorer.dislike_margin, (e, history)
        assert not any(e["kind"] == "interaction" for e in ev)  # every unit of score is named
        # query evidence exists exactly when some query text was left to embed after parsing
        assert any(e["kind"] == "query" for e in ev) == bool(res.get("parsed_query", {}).get("text"))
        assert isinstance(item["reason"], str) and item["reason"].startswith("Recommended")


def test_evidence_sums_for_stored_users_with_query(rec):
    for user in _users(rec, 1):
        for query in (None, QUERIES[0]):
            res = rec.recommend(user=user, query=query, k=10, explain=True)
            for item in res["items"]:
                assert _evidence_sum(item) == pytest.approx(item["score"], abs=1e-4)


# ============================================================== the decomposition is exact
def test_decompose_parts_sum_to_score(rec):
    rng = np.random.default_rng(0)
    scorer = rec.scorer
    n = scorer.n_items
    qvec = rec.encode_query(QUERIES[1])
    for trial in range(40):
        size = int(rng.integers(0, 12))
        hist = rng.choice(n, size=size, replace=False)
        ratings = rng.integers(1, 6, size=size).astype(np.float64)
        state = scorer.user_state(hist, ratings, qvec if trial % 2 else None)
        full = scorer.score(state)
        items = rng.choice(n, size=8, replace=False)
        np.testing.assert_allclose(scorer.score(state, items), full[items], atol=1e-6)
        for i in items:
            parts = scorer.decompose(state, int(i))
            assert parts["history"].shape == (size,)
            total = parts["history"].sum() + parts["query"] + parts["bias"] + parts["interaction"]
            assert total == pytest.approx(float(full[i]), abs=1e-5)
            if trial % 2 == 0:
                assert parts["query"] == 0.0


def test_cross_term_attribution_is_exact_integrated_gradients(rec):
    """The closed-form path-averaged gradient of CLS matches a 4000-step midpoint quadrature of the
    analytic gradient along alpha * p_u, and the parts of CLS sum to CLS(p_u) - CLS(0) within 1e-4."""
    rng = np.random.default_rng(1)
    scorer = rec.scorer
    w = scorer.w
    d = w["F"].shape[1]
    W1a, W1c = w["W1"][:d], w["W1"][2 * d :]
    qvec = rec.encode_query(QUERIES[2])
    checked = 0
    for trial in range(10):
        hist = rng.choice(scorer.n_items, size=int(rng.integers(1, 15)), replace=False)
        state = scorer.user_state(hist, rng.integers(1, 6, size=len(hist)).astype(float), qvec if trial % 2 else None)
        items = rng.choice(scorer.n_items, size=6, replace=False)
        g, cls0 = scorer.cross_gradients(state.pL, items)
        full = scorer.cross(state.pL, items)
        np.testing.assert_allclose(g @ state.pL, full - cls0, atol=1e-4)
        np.testing.assert_allclose(cls0, scorer.cross(np.zeros_like(state.pL), items), atol=1e-6)
        alphas = (np.arange(4000) + 0.5) / 4000
        for j, i in enumerate(items):
            F = w["F"][i]
            dh = W1a + F[:, None] * W1c  # d h_k / d p_u
            a = state.pL @ dh
            c = F @ w["W1"][d : 2 * d] + w["b1"]
            active = (alphas[:, None] * a[None, :] + c[None, :]) > 0
            g_num = dh @ (w["w2"] * active.mean(axis=0))
            np.testing.assert_allclose(g[j], g_num, atol=2e-3 * max(1.0, np.abs(g_num).max()))
            checked += 1
        parts = scorer.decompose_many(state, items)
        for p in parts:
            assert abs(p["interaction"]) < 1e-4
    assert checked == 60


def test_a_rating_aware_scorer_reads_a_history_without_ratings_as_all_liked(rec):
    hist = np.array([3, 7, 9])
    state = rec.scorer.user_state(hist)
    assert state.liked.tolist() == [True] * 3
    same = rec.scorer.user_state(hist, np.full(3, np.nan))
    np.testing.assert_allclose(rec.scorer.score(state), rec.scorer.score(same), atol=1e-6)


def test_disliked_items_weigh_zero_and_are_never_cited(rec):
    """A rating below the history's mean gives the item weight 0 in every block: its contribution is 0,
    it is never cited, and explicit negative events count as disliked whatever the rating."""
    from lucidrec.models.scoring import liked_mask

    assert rec.scorer.dislike_margin is not None  # this module trains a rating-aware model
    assert list(liked_mask(np.array([5.0, 1.0, np.nan, 4.0]), 0.0)) == [True, False, True, True]
    assert list(liked_mask(np.array([5.0, 5.0]), 0.0, np.array([False, True]))) == [True, False]
    users = _users(rec, 4)
    disliked_seen = 0
    for user in users:
        hist = _stored_history(rec, user)
        r = np.array([h[1] for h in hist], dtype=float)
        liked = liked_mask(r, rec.scorer.dislike_margin)
        state = rec.scorer.user_state(np.array([rec.item_idx(h[0]) for h in hist]), r)
        assert np.all(state.wE[~liked] == 0) and np.all(state.wL[~liked] == 0) and np.all(state.wT[~liked] == 0)
        disliked_ids = {h[0] for h, ok in zip(hist, liked) if not ok}
        disliked_seen += len(disliked_ids)
        for item in rec.recommend(user=user, k=5, explain=True)["items"]:
            cited = {e["item_id"] for e in item["evidence"] if e["kind"] == "history"}
            assert not cited & disliked_ids
    assert disliked_seen > 0


def test_popularity_is_claimed_only_when_it_is_a_main_part(rec):
    for query in QUERIES:
        for lang in ("en", "zh"):
            for item in rec.recommend(query=query, k=5, explain=True, lang=lang)["items"]:
                ev = item["evidence"]
                pop = next(e for e in ev if e["kind"] == "popularity")["contribution"]
                others = [e["contribution"] for e in ev if e["kind"] != "popularity" and e.get("contribution", 0) > 0]
                if "popular" in item["reason"] or "广受欢迎" in item["reason"]:
                    assert pop > 0 and pop >= max(others, default=0.0), item


# ============================================================== deletion fidelity
#: Share of (user, item) pairs where the measured drop must match the claimed contribution. The tiny
#: data's histories hold 3-15 items, so removing one re-normalises the rest (1/sqrt(n)) and shifts their
#: recency buckets far more than on real data; benchmarks/explanations.py measures ML-100K.
FIDELITY_SHARE = 0.65
#: Relative error allowed between the measured drop and the claimed contribution. No absolute escape
#: hatch: contributions on the tiny model are ~0.01-0.05, so an absolute 0.05 would accept anything.
FIDELITY_REL = 0.5


def _liked_set_changes(rec, hist, k):
    """Does removing history item ``k`` change which other items are liked? (It moves the user's mean.)"""
    from lucidrec.models.scoring import liked_mask

    r = np.array([np.nan if h[1] is None else h[1] for h in hist], dtype=np.float64)
    m = rec.scorer.dislike_margin
    return bool((np.delete(liked_mask(r, m), k) != liked_mask(np.delete(r, k), m)).any())


def test_deletion_fidelity(rec):
    """Removing the top cited history item lowers the score by about its claimed contribution.

    Not exact: removing an item also changes the history length normalisation (1/sqrt(n), 1/n), the
    position buckets of older items and the cross term. And in a rating-aware model it moves the user's
    mean rating, which can turn another item from disliked (weight 0) to liked: on the tiny data's 3-15
    item histories with random ratings that happens often, so the drop is required only where the
    liked set stays the same (counterfactuals re-score the full model, so they account for it)."""
    pairs, drops_ok, close = 0, 0, 0
    flips = 0
    rel_errors = []
    for user in _users(rec, 2):
        hist = _stored_history(rec, user)
        full = rec.score_items(history=hist)
        np.testing.assert_allclose(full, rec.score_items(user=user), atol=1e-7)
        res = rec.recommend(user=user, k=5, explain=True)
        for item in res["items"]:
            top = next((e for e in item["evidence"] if e["kind"] == "history"), None)
            if top is None:
                continue
            k = [h[0] for h in hist].index(top["item_id"])
            if _liked_set_changes(rec, hist, k):
                flips += 1
                continue
            remaining = [h for h in hist if h[0] != top["item_id"]]
            assert len(remaining) == len(hist) - 1
            i = rec.item_idx(item["item_id"])
            after = rec.score_items(history=remaining, items=[item["item_id"]])[0]
            drop = float(full[i] - after)
            claimed = top["contribution"]
            pairs += 1
            drops_ok += drop > 0
            err = abs(drop - claimed) / abs(claimed)
            rel_errors.append(err)
            close += err < FIDELITY_REL
    assert pairs >= 30, (pairs, flips)
    assert drops_ok == pairs, f"{pairs - drops_ok} of {pairs} deletions did not lower the score"
    assert close >= FIDELITY_SHARE * pairs, (close, pairs, sorted(rel_errors)[-5:])
    assert float(np.median(rel_errors)) < 0.5


# ============================================================== counterfactuals
def _what_if_requests(rec, k: int = 5):
    """(result with counterfactuals, the user's stored history, items the request may return, k) for twelve
    users with at least three history items: what the counterfactual tests re-score independently."""
    for user in _users(rec, 3)[:12]:
        hist = _stored_history(rec, user)
        seen = {h[0] for h in hist}
        allowed = np.array([iid not in seen for iid in rec.item_ids])
        yield rec.recommend(user=user, k=k, explain=True, counterfactual=True), hist, allowed, k


def test_counterfactuals_are_verified_and_minimal_among_singles(rec):
    """Each counterfactual is checked here independently: re-score without the removed items, the item
    leaves the top-k at the reported rank, and the reported replacement is in the new top-k; a set of
    two or more is reported only when no single cited item would do."""
    checked = 0
    for res, hist, allowed, k in _what_if_requests(rec):
        seen = {h[0] for h in hist}
        for item in res["items"]:
            assert "counterfactual" in item
            cf = item["counterfactual"]
            if cf is None:
                continue
            checked += 1
            assert set(cf) == {
                "removed",
                "removed_titles",
                "new_rank",
                "replaced_by",
                "replaced_by_title",
                "verified",
                "text",
            }
            assert 1 <= len(cf["removed"]) <= 10 and set(cf["removed"]) <= seen
            assert cf["removed_titles"] == [str(rec.titles[rec.item_idx(i)]) for i in cf["removed"]]
            after = rec.score_items(history=[h for h in hist if h[0] not in set(cf["removed"])])
            i = rec.item_idx(item["item_id"])
            assert rank_among(after, allowed, i) == cf["new_rank"] > k
            j = rec.item_idx(cf["replaced_by"])
            assert allowed[j] and rank_among(after, allowed, j) <= k
            assert cf["replaced_by"] not in {it["item_id"] for it in res["items"]}
            assert item["title"] in cf["text"] and f"#{cf['new_rank']}" in cf["text"]
            if len(cf["removed"]) > 1:
                for e in (e for e in item["evidence"] if e["kind"] == "history"):
                    single = rec.score_items(history=[h for h in hist if h[0] != e["item_id"]])
                    assert rank_among(single, allowed, i) <= k, (e, cf)
    assert checked >= 10


def test_counterfactual_is_none_only_when_no_small_set_exists(rec):
    """Where no counterfactual is reported for a history of <= 10 items, removing the whole history must
    keep the item in the top-k (the search always tries that set). Longer histories are not checked here:
    the search is guided, not exhaustive, and refuses claims across near-ties."""
    for user in _users(rec, 2)[:12]:
        k = 5
        res = rec.recommend(user=user, k=k, explain=True, counterfactual=True)
        hist = _stored_history(rec, user)
        seen = {h[0] for h in hist}
        allowed = np.array([iid not in seen for iid in rec.item_ids])
        for item in res["items"]:
            if item["counterfactual"] is not None or len(hist) > 10:
                continue
            after = rec.score_items(history=[])
            assert rank_among(after, allowed, rec.item_idx(item["item_id"])) <= k


def test_counterfactual_zh_sentence(rec):
    for user in _users(rec, 3)[:6]:
        for item in rec.recommend(user=user, k=5, counterfactual=True, lang="zh")["items"]:
            cf = item["counterfactual"]
            if cf is not None:
                assert cf["text"].startswith("如果没有您对《") and f"第{cf['new_rank']}位" in cf["text"]
                assert f"由《{cf['replaced_by_title']}》取代" in cf["text"]


def test_counterfactual_implies_explain(rec):
    user = _users(rec, 2)[0]
    res = rec.recommend(user=user, k=3, counterfactual=True, explain=True)
    assert all("evidence" in it and "reason" in it for it in res["items"])
    plain = rec.recommend(user=user, k=3)
    assert all("evidence" not in it and "counterfactual" not in it for it in plain["items"])


def test_counterfactual_without_history_is_none(rec):
    res = rec.recommend(query=QUERIES[0], k=3, explain=True, counterfactual=True)
    assert all(it["counterfactual"] is None for it in res["items"])


# ============================================================== reasons
def test_english_reason_cites_top_history_item(rec):
    cited = 0
    for user in _users(rec, 2):
        for item in rec.recommend(user=user, k=5, explain=True)["items"]:
            reason = item["reason"]
            assert reason.startswith("Recommended " + item["title"])
            top = next((e for e in item["evidence"] if e["kind"] == "history"), None)
            if top is not None:
                cited += 1
                assert top["title"] in reason, (reason, top)
                assert reason.startswith(f"Recommended {item['title']} because you ")
    assert cited >= 30


def test_chinese_reason(rec):
    for user in _users(rec, 2)[:8]:
        for item in rec.recommend(user=user, k=5, explain=True, lang="zh")["items"]:
            reason = item["reason"]
            assert reason.startswith("推荐《"), reason
            assert f"《{item['title']}》" in reason
            top = next((e for e in item["evidence"] if e["kind"] == "history"), None)
            if top is not None:
                assert f"《{top['title']}》" in reason
    for item in rec.recommend(query=QUERIES[1], k=3, explain=True, lang="zh")["items"]:
        assert item["reason"].startswith("推荐《")


@pytest.mark.parametrize("query", QUERIES)
def test_query_only_reason_mentions_query(rec, query):
    res = rec.recommend(query=query, k=5, explain=True)
    assert res["history_size"] == 0
    first = res["items"][0]
    # The query evidence names the text that was embedded: what is left after constraints are parsed out.
    text = res["parsed_query"]["text"]
    if not text:
        assert not any(e["kind"] == "query" for e in first["evidence"])
        assert "fits your request" in first["reason"]
        return
    q_ev = next(e for e in first["evidence"] if e["kind"] == "query")
    assert q_ev["text"] == text
    assert q_ev["contribution"] > 0, first  # the best match to a query is pulled up by the query
    for item in res["items"]:
        assert not any(e["kind"] in ("history", "history_other") for e in item["evidence"])
        q = next(e for e in item["evidence"] if e["kind"] == "query")
        if q["contribution"] > 0:
            assert f'"{text}"' in item["reason"], item["reason"]
    zh = rec.recommend(query=query, k=1, explain=True, lang="zh")["items"][0]["reason"]
    assert text in zh


def test_reason_without_history_or_query(rec):
    res = rec.recommend(history=[], k=3, explain=True)
    for item in res["items"]:
        assert item["reason"].startswith(f"Recommended {item['title']}: ")


def test_reasons_never_mention_user_attributes(rec):
    words = re.compile(r"\b(age|gender|occupation|zip|country|male|female|tribe)\b", re.I)
    for user in _users(rec, 1)[:10]:
        for lang in ("en", "zh"):
            for query in (None, QUERIES[0]):
                res = rec.recommend(user=user, query=query, k=5, explain=True, counterfactual=True, lang=lang)
                blob = json.dumps(res["items"], ensure_ascii=False)
                for value in USER_ATTRIBUTE_VALUES:
                    assert value not in blob
                for item in res["items"]:
                    assert not words.search(item["reason"]), item["reason"]
                    assert {e["kind"] for e in item["evidence"]} <= EVIDENCE_KINDS
                    assert not any("user" in e for e in item["evidence"])


def test_a_reason_with_a_what_if_names_nothing_that_would_not_decide_together(rec):
    """Where an item has a verified what-if, removing every history item its reason names drops it out of
    the top-k (checked here by re-scoring): supporters that would not decide together with the what-if's
    set are left unnamed (``named: False``) and still counted in the evidence."""
    checked = 0
    for res, hist, allowed, k in _what_if_requests(rec):
        for item in res["items"]:
            if item["counterfactual"] is None:
                continue
            history = [e for e in item["evidence"] if e["kind"] == "history"]
            named = {e["item_id"] for e in history if e["title"] in item["reason"]}
            assert {e["item_id"] for e in history if e["decisive"]} <= named
            after = rec.score_items(history=[h for h in hist if h[0] not in named])
            assert rank_among(after, allowed, rec.item_idx(item["item_id"])) > k, (item["reason"], named)
            assert all(e["title"] not in item["reason"] for e in history if e.get("named") is False)
            checked += 1
    assert checked >= 10


def test_the_what_if_search_ends_with_a_re_scored_greedy_search():
    """Where a nonlinear part of the score (the transformer term) makes the linear prediction miss every
    removal set that works, the last resort re-scores: here the item leaves the top-1 only when history items
    0 and 1 are both gone, while the contributions say item 2 carries it."""
    from types import SimpleNamespace

    from lucidrec.explain.counterfactual import _greedy_rescored

    class Subsets:  # the item (3) scores 2.0 while history item 0 or 1 is kept; its rival (4) scores 1.0
        def scores_around(self, keeps, targets):
            out = np.zeros((len(keeps), 6))
            out[:, 3] = np.where(keeps[:, 0] | keeps[:, 1], 2.0, 0.5)
            out[:, 4] = 1.0 + 0.1 * ~keeps[:, 2]
            return out

    model = SimpleNamespace(
        catalogue=SimpleNamespace(item_ids=np.array(list("abcdef")), titles=np.array(list("ABCDEF")))
    )
    entries = [SimpleNamespace(item=j) for j in range(3)]
    allowed = np.array([False, False, False, True, True, True])
    contrib = np.array([[0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [1.0, 0.0, 0.0]])  # history x pool (3, 4, 5)
    found = _greedy_rescored(
        model, entries, Subsets(), allowed, contrib, {3: 0, 4: 1, 5: 2}, np.arange(3), [3], 1, {3}, 10
    )
    cf = found[3]
    assert {"a", "b"} <= set(cf["removed"]) and cf["new_rank"] == 2 and cf["replaced_by"] == "e"
    # nothing drops it when a set of at most one item is allowed
    assert (
        _greedy_rescored(model, entries, Subsets(), allowed, contrib, {3: 0, 4: 1, 5: 2}, np.arange(3), [3], 1, {3}, 1)
        == {}
    )
