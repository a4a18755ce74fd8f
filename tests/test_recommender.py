"""The Recommender facade: fit / recommend / save / load, torch-numpy parity, cold start and model errors.

Everything trains on the tiny generated dataset (HybridConfig(epochs=2, dim=8)) once per module; the
embedding cache lives in a session tmp dir so nothing is written to ~/.cache. The ML-100K cold-item test
trains on the real data and is marked slow.
"""

from __future__ import annotations

import json
import math
import shutil
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_frames

import lucidrec.data
from lucidrec.errors import ConfigError, ModelError, UnknownIdError
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import MAX_K, Recommender, parse_history

torch = pytest.importorskip("torch")

QUERY = "a scary horror film with monsters"


def _tiny_dataset(extra_items: pd.DataFrame | None = None):
    interactions, items = make_tiny_frames()
    if extra_items is not None:
        items = pd.concat([items, extra_items], ignore_index=True)
    return lucidrec.data.from_dataframes(interactions, items, name="tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lucidrec-cache"))


@pytest.fixture(scope="module")
def tiny(cache_dir):
    ds = _tiny_dataset()
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache_dir).fit(ds, progress=False)
    return ds, rec


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """The tiny model saved once (exports the ONNX encoder) and loaded back."""
    _, rec = tiny
    out = rec.save(tmp_path_factory.mktemp("model") / "tiny")
    return out, Recommender.load(out)


@pytest.fixture(scope="module")
def tiny_no_refit(cache_dir):
    ds = _tiny_dataset()
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache_dir).fit(ds, progress=False, refit_item_item=False)
    return ds, rec


def _users_with_history(rec, min_len=3):
    return [u for u in rec._known_users_with_history() if len(rec._known_history(u)) >= min_len]


def _history_ids(rec, user):
    return {str(rec.item_ids[h.item]) for h in rec._known_history(user)}


# ============================================================== recommend on a known user
def test_fit_reports_training(tiny):
    _, rec = tiny
    rep = rec.train_report
    assert rep["epochs"][0]["epoch"] == 1 and 1 <= len(rep["epochs"]) <= 2  # every recorded epoch was trained
    assert math.isfinite(rep["best_valid_ndcg@10"])
    assert rec.scorer is not None and rec.scorer.n_items == 40


def test_fit_produces_a_non_constant_model(tiny):
    """Guard against a degenerate model (e.g. untrained towers kept by early stopping and the item-item
    block switched off): every score equal, queries ignored, explanations empty."""
    _, rec = tiny
    for user in _users_with_history(rec)[:5]:
        assert np.ptp(rec.score_items(user=user)) > 1e-4, (
            f"every item scores the same for user {user}: a constant model. Likely cause: validation NDCG of "
            f"all-tied scores (ties broken by item index) beat the trained epochs / the item-item blend. "
            f"train report: {rec.train_report}"
        )
    assert np.ptp(rec.score_items(query=QUERY)) > 1e-4, rec.train_report
    assert float(rec.scorer.w["query_text"][0]) > 0 or float(rec.scorer.w["query_latent"][0]) > 0


@pytest.mark.parametrize("k", [1, 3, 10])
def test_recommend_known_user_shape_and_order(tiny, k):
    _, rec = tiny
    for user in _users_with_history(rec)[:5]:
        res = rec.recommend(user=user, k=k)
        items = res["items"]
        assert len(items) == k
        assert res["user"] == user and res["history_source"] == "stored"
        assert res["history_size"] == len(rec._known_history(user))
        assert [it["rank"] for it in items] == list(range(1, k + 1))
        assert all(isinstance(it["item_id"], str) and it["item_id"] in rec.item_index for it in items)
        assert all(isinstance(it["title"], str) and it["title"] for it in items)
        scores = [it["score"] for it in items]
        assert all(math.isfinite(s) for s in scores)
        assert all(a >= b for a, b in pairwise(scores)), scores
        assert len({it["item_id"] for it in items}) == k


def test_recommend_excludes_seen(tiny):
    _, rec = tiny
    n = len(rec.item_ids)
    for user in rec._known_users_with_history():
        seen = _history_ids(rec, user)
        res = rec.recommend(user=user, k=MAX_K)
        got = [it["item_id"] for it in res["items"]]
        assert not seen & set(got), user
        assert len(got) == n - len(seen)  # every unseen item is rankable, and only those


def test_recommend_include_seen(tiny):
    _, rec = tiny
    user = max(rec._known_users_with_history(), key=lambda u: len(rec._known_history(u)))
    seen = _history_ids(rec, user)
    res = rec.recommend(user=user, k=len(rec.item_ids), exclude_seen=False)
    got = [it["item_id"] for it in res["items"]]
    assert sorted(got) == sorted(rec.item_ids)
    assert seen <= set(got)
    # the full ranking matches score_items
    s = rec.score_items(user=user)
    want = [rec.item_ids[i] for i in np.argsort(-s, kind="stable")]
    assert [it["score"] for it in res["items"]] == pytest.approx(np.sort(s)[::-1], abs=1e-6)
    assert got[0] == want[0]


def test_recommend_exclude_argument(tiny):
    _, rec = tiny
    user = _users_with_history(rec)[0]
    top = rec.recommend(user=user, k=3)["items"][0]["item_id"]
    res = rec.recommend(user=user, k=3, exclude=[top])
    assert top not in [it["item_id"] for it in res["items"]]
    with pytest.raises(UnknownIdError):
        rec.recommend(user=user, k=3, exclude=["no-such-item"])


def test_recommend_is_deterministic(tiny):
    _, rec = tiny
    user = _users_with_history(rec)[0]
    assert rec.recommend(user=user, k=5) == rec.recommend(user=user, k=5)


# ============================================================== save / load round trip
def test_save_writes_the_documented_layout(saved):
    out, _ = saved
    for f in (
        "config.json",
        "weights.safetensors",
        "item_item.safetensors",
        "items.json",
        "interactions.npz",
        "encoder/model.onnx",
        "encoder/tokenizer.json",
    ):
        assert (out / f).exists(), f
    meta = json.loads((out / "config.json").read_text())
    assert meta["format_version"] == 1
    assert meta["config"]["dim"] == 8 and meta["config"]["epochs"] == 2


def test_load_round_trip_user_scores(tiny, saved):
    _, rec = tiny
    _, loaded = saved
    assert list(loaded.item_ids) == list(rec.item_ids)
    assert list(loaded.titles) == list(rec.titles)
    for user in rec._known_users_with_history():
        np.testing.assert_allclose(loaded.score_items(user=user), rec.score_items(user=user), atol=1e-6)
        assert loaded.recommend(user=user, k=5)["items"] == rec.recommend(user=user, k=5)["items"]


def test_load_then_save_keeps_the_config(saved, tmp_path):
    """A loaded model saved again writes the same config.json (the feature space description included)."""
    out, loaded = saved
    loaded.save(tmp_path / "again")
    first = json.loads((out / "config.json").read_text())
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert first["feature_space"] is not None
    assert again == first
    reloaded = Recommender.load(tmp_path / "again")  # checksums and encoder copied along: it loads and serves
    user = loaded._known_users_with_history()[0]
    np.testing.assert_allclose(reloaded.score_items(user=user), loaded.score_items(user=user), atol=1e-6)


def test_load_round_trip_inline_history(tiny, saved):
    _, rec = tiny
    _, loaded = saved
    np.testing.assert_allclose(loaded.score_items(history="101:5,105"), rec.score_items(history="101:5,105"), atol=1e-6)


@pytest.mark.parametrize("query", [QUERY, "funny romantic comedy", "Item 120"])
def test_load_round_trip_query_onnx_matches_sentence_transformers(tiny, saved, query):
    _, rec = tiny
    _, loaded = saved
    assert type(loaded._query_encoder).__name__ == "OnnxEncoder"
    # float32: a relative bound too (the tiny model's calibrated query weight puts scores near 40)
    np.testing.assert_allclose(loaded.score_items(query=query), rec.score_items(query=query), atol=1e-5, rtol=2e-6)
    user = _users_with_history(rec)[0]
    np.testing.assert_allclose(
        loaded.score_items(user=user, query=query), rec.score_items(user=user, query=query), atol=1e-5, rtol=2e-6
    )


def test_load_without_encoder_serves_histories_but_not_queries(tiny, saved):
    out, _ = saved
    _, rec = tiny
    bare = Recommender.load(out, load_encoder=False)
    user = _users_with_history(rec)[0]
    np.testing.assert_allclose(bare.score_items(user=user), rec.score_items(user=user), atol=1e-6)
    with pytest.raises(ModelError, match="Fix"):
        bare.recommend(query=QUERY)


def test_loaded_model_can_be_saved_again(saved, tmp_path):
    out, loaded = saved
    shutil.copytree(out / "encoder", tmp_path / "again" / "encoder")
    loaded.save(tmp_path / "again")
    again = Recommender.load(tmp_path / "again")
    user = loaded._known_users_with_history()[3]
    np.testing.assert_allclose(again.score_items(user=user), loaded.score_items(user=user), atol=1e-7)


# ============================================================== torch module == numpy scorer
def test_torch_net_matches_numpy_scorer(tiny_no_refit):
    from lucidrec.models.hybrid import pad_histories

    _, rec = tiny_no_refit
    net = rec._torch_net
    net.eval()
    users = _users_with_history(rec, 1)[:6]
    hists = [np.array([h.item for h in rec._known_history(u)], np.int64) for u in users]
    rats = [np.array([h.rating for h in rec._known_history(u)], np.float64) for u in users]
    # one empty history and one built by hand (unordered ids, mixed ratings) as extra cases
    hists += [np.zeros(0, np.int64), np.array([7, 3, 30, 12], np.int64)]
    rats += [np.zeros(0, np.float64), np.array([1.0, 5.0, 3.0, 4.0])]
    assert max(len(h) for h in hists) >= 3
    with torch.no_grad():
        torch_scores = net(*pad_histories(hists, rats, rec.scorer.dislike_margin, rec.scorer.rating_slope)).numpy()
    for k, (h, r) in enumerate(zip(hists, rats, strict=True)):
        np_scores = rec.scorer.score(rec.scorer.user_state(h, r))
        np.testing.assert_allclose(torch_scores[k], np_scores, atol=1e-5, rtol=2e-6, err_msg=f"history {k}")


def test_torch_net_matches_stored_user_scores(tiny_no_refit):
    """The serving path (score_items on a stored user) is the torch model's forward pass."""
    from lucidrec.models.hybrid import pad_histories

    _, rec = tiny_no_refit
    users = _users_with_history(rec, 1)[:4]
    hists = [np.array([h.item for h in rec._known_history(u)], np.int64) for u in users]
    rats = [np.array([h.rating for h in rec._known_history(u)], np.float64) for u in users]
    rec._torch_net.eval()
    with torch.no_grad():
        torch_scores = rec._torch_net(
            *pad_histories(hists, rats, rec.scorer.dislike_margin, rec.scorer.rating_slope)
        ).numpy()
    for k, u in enumerate(users):
        np.testing.assert_allclose(torch_scores[k], rec.score_items(user=u), atol=1e-5, rtol=2e-6)


# ============================================================== cold start and input validation
def test_query_only_user(tiny):
    _, rec = tiny
    res = rec.recommend(query=QUERY, k=5)
    assert res["user"] is None and res["history_size"] == 0 and res["query"] == QUERY
    assert len(res["items"]) == 5
    scores = [it["score"] for it in res["items"]]
    assert all(a >= b for a, b in pairwise(scores))
    # the query actually changes the ranking away from the no-history (popularity) ranking
    assert not np.allclose(rec.score_items(query=QUERY), rec.score_items(query="funny romantic comedy"))


def test_inline_history_string_and_tuples_agree(tiny):
    _, rec = tiny
    res = rec.recommend(history="101:5,105", k=5)
    assert res["history_source"] == "inline" and res["history_size"] == 2
    got = {it["item_id"] for it in res["items"]}
    assert not got & {"101", "105"}
    res2 = rec.recommend(history=[("101", 5), ("105", None)], k=5)
    res3 = rec.recommend(history=[(101, 5.0), 105], k=5)
    res4 = rec.recommend(history=[{"item": "101", "rating": 5}, {"item_id": 105}], k=5)
    assert res2["items"] == res["items"] == res3["items"] == res4["items"]
    np.testing.assert_array_equal(
        rec.score_items(history="101:5,105"), rec.score_items(history=[("101", 5.0), ("105", None)])
    )


def test_inline_history_for_an_unknown_user(tiny):
    _, rec = tiny
    res = rec.recommend(user="brand-new-user", history="101:5,105", k=3)
    assert res["user"] == "brand-new-user" and res["history_source"] == "inline"
    np.testing.assert_array_equal(
        rec.score_items(user="brand-new-user", history="101:5,105"), rec.score_items(history="101:5,105")
    )


def test_inline_history_reproduces_stored_history(tiny):
    """A known user's stored history given inline, in time order, scores exactly like the user id."""
    _, rec = tiny
    for user in _users_with_history(rec)[:5]:
        hist = [(str(rec.item_ids[h.item]), h.rating) for h in rec._known_history(user)]
        np.testing.assert_allclose(rec.score_items(history=hist), rec.score_items(user=user), atol=1e-7)


def test_inline_history_adds_to_a_known_user(tiny):
    _, rec = tiny
    user = _users_with_history(rec)[0]
    new = next(i for i in rec.item_ids if i not in _history_ids(rec, user))
    res = rec.recommend(user=user, history=f"{new}:5", k=5)
    assert res["history_source"] == "stored+inline"
    assert res["history_size"] == len(rec._known_history(user)) + 1
    assert new not in [it["item_id"] for it in res["items"]]


def test_parse_history_forms():
    assert parse_history(None) == []
    assert parse_history("101:5, 105 ,,") == [("101", 5.0), ("105", None)]
    assert parse_history([101, ("102", 4), ["103"], {"item": 104, "rating": 2}]) == [
        ("101", None),
        ("102", 4.0),
        ("103", None),
        ("104", 2.0),
    ]
    with pytest.raises(ConfigError, match="Fix"):
        parse_history("101:five")
    with pytest.raises(ConfigError, match="Fix"):
        parse_history([{"rating": 3}])


def test_unknown_user_without_history(tiny):
    _, rec = tiny
    with pytest.raises(UnknownIdError) as e:
        rec.recommend(user="nobody")
    assert "Fix" in str(e.value) and "nobody" in str(e.value)
    with pytest.raises(UnknownIdError):
        rec.score_items(user="nobody")


@pytest.mark.parametrize("history", ["101:5,999999", [("999999", 4)], "nope"])
def test_unknown_item_in_inline_history(tiny, history):
    _, rec = tiny
    with pytest.raises(UnknownIdError) as e:
        rec.recommend(history=history)
    assert "Fix" in str(e.value)


@pytest.mark.parametrize("history", ["101:nan", "101:inf", "101:x"])
def test_bad_inline_rating(tiny, history):
    _, rec = tiny
    with pytest.raises(ConfigError):
        rec.recommend(history=history)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 1001, 2.0, True, "3"])
def test_bad_k(tiny, k):
    _, rec = tiny
    with pytest.raises(ConfigError):
        rec.recommend(user=_users_with_history(rec)[0], k=k)


def test_k_larger_than_catalog_returns_what_is_left(tiny):
    _, rec = tiny
    res = rec.recommend(query=QUERY, k=MAX_K)
    assert len(res["items"]) == len(rec.item_ids)


@pytest.mark.parametrize("lang", ["fr", "EN", ""])
def test_bad_lang(tiny, lang):
    _, rec = tiny
    with pytest.raises(ConfigError):
        rec.recommend(query=QUERY, lang=lang)


def test_long_query_rejected(tiny):
    _, rec = tiny
    with pytest.raises(ConfigError, match="Fix"):
        rec.recommend(query="x" * 5000)
    with pytest.raises(ConfigError):
        rec.score_items(query="y" * 5000)
    with pytest.raises(ConfigError):
        rec.recommend(query=12345)


def test_query_with_control_characters(tiny):
    _, rec = tiny
    dirty = "a scary\x00 horror\x07 film\n\twith \x1bmonsters\r\n"
    res = rec.recommend(query=dirty, k=3)
    assert res["query"] == QUERY
    assert all(ch.isprintable() for ch in res["query"])
    assert len(res["items"]) == 3
    np.testing.assert_allclose(rec.score_items(query=dirty), rec.score_items(query=QUERY), atol=1e-6)


def test_blank_query_is_no_query(tiny):
    _, rec = tiny
    res = rec.recommend(query="   \n ", k=3)
    assert len(res["items"]) == 3
    assert res["items"] == rec.recommend(k=3)["items"]


def test_blank_query_is_no_query_in_score_items(tiny):
    _, rec = tiny
    if not (rec.scorer.w["query_text"][0] > 0 or rec.scorer.w["query_latent"][0] > 0):
        pytest.skip("this model ignores queries altogether (see test_fit_produces_a_non_constant_model)")
    np.testing.assert_allclose(rec.score_items(query="  \n"), rec.score_items(), atol=1e-7)


def test_untrained_recommender_raises_model_error():
    rec = Recommender(HybridConfig(epochs=1, dim=8))
    with pytest.raises(ModelError, match="Fix"):
        rec.recommend(query="anything")
    with pytest.raises(ModelError, match="Fix"):
        rec.save("/nonexistent/never-written")


# ============================================================== items nobody has interacted with
@pytest.fixture(scope="module")
def tiny_cold(cache_dir):
    interactions, items = make_tiny_frames()
    popular = interactions["item"].value_counts().index[0]
    src = items.loc[items["item"] == popular].iloc[0]
    new = pd.DataFrame(
        {
            "item": [999],
            "title": ["Brand New Item"],
            "genres": [src["genres"]],
            "year": [src["year"]],
            "description": [f"Genres: {src['genres'].replace('|', ', ')}"],
        }
    )
    ds = _tiny_dataset(new)
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache_dir).fit(ds, progress=False)
    return ds, rec, str(popular)


def test_new_item_without_interactions_is_scored_and_rankable(tiny_cold):
    ds, rec, popular = tiny_cold
    assert "999" in rec.item_index and "999" not in set(ds.interactions["item"])
    n = len(rec.item_ids)
    assert n == 41
    for user in _users_with_history(rec)[:5] + [None]:
        kw = {"user": user} if user else {"history": f"{popular}:5"}
        s = rec.score_items(items=["999"], **kw)
        assert s.shape == (1,) and np.isfinite(s).all()
        full = rec.score_items(**kw)
        assert np.isfinite(full).all()
        assert s[0] == pytest.approx(full[rec.item_idx("999")], abs=1e-7)
        res = rec.recommend(k=n, exclude_seen=False, **kw)
        ranked = [it["item_id"] for it in res["items"]]
        assert "999" in ranked and len(ranked) == n
    # as inline history, too
    assert len(rec.recommend(history="999:5", k=3)["items"]) == 3


def test_new_item_rank_follows_its_text(tiny_cold):
    """A query naming the new item's text scores it higher than an unrelated query does."""
    _, rec, _ = tiny_cold
    i = rec.item_idx("999")
    a = rec.score_items(query="Brand New Item")[i]
    b = rec.score_items(query="quantum chromodynamics lecture notes")[i]
    assert np.isfinite(a) and np.isfinite(b)
    assert a > b


def _comedy_fan(ds):
    genres = ds.items["genres"].to_numpy()
    is_comedy = np.array(["Comedy" in g for g in genres])
    inter = ds.interactions
    frame = pd.DataFrame({"user": inter["user"], "comedy": is_comedy[inter["iidx"].to_numpy()]})
    stats = frame.groupby("user")["comedy"].agg(["size", "mean"])
    stats = stats[stats["size"] >= 50]
    return str(stats["mean"].idxmax()), float(stats["mean"].max())


@pytest.mark.slow
def test_ml100k_new_comedy_ranks_high_for_a_comedy_fan(ml100k, tmp_path_factory):
    """A brand-new comedy (no interactions) ranks in the top third of the catalog for the user whose
    history is most comedy-heavy, and higher for that user than for the user with the fewest comedies.
    (Measured: about rank 490 of 1,683, top 29%.) ~40 s on 2 CPU cores (encoding + one epoch)."""
    items = pd.concat(
        [
            ml100k.items,
            pd.DataFrame(
                [{"item": "99999", "movie_title": "Comedy Night", "release_year": 1996.0, "genres": ["Comedy"]}]
            ),
        ],
        ignore_index=True,
    )
    inter = ml100k.interactions[["user", "item", "rating", "timestamp", "event"]]
    ds = lucidrec.data.Dataset(inter, items, schema=ml100k.schema, name="ml-100k-new-item")
    assert ds.titles()[-1] == "Comedy Night (1996)"
    user, share = _comedy_fan(ds)
    assert share > 0.5
    rec = Recommender(HybridConfig(epochs=1), cache_dir=str(tmp_path_factory.mktemp("cache-ml"))).fit(
        ds, progress=False
    )
    s = rec.score_items(user=user)
    i = rec.item_idx("99999")
    assert np.isfinite(s[i])
    rank = int((s > s[i]).sum()) + 1
    assert rank <= len(s) / 3, (
        f"new comedy ranks {rank} of {len(s)} for comedy fan {user} (score {s[i]:.4f}; train report {rec.train_report})"
    )
    genres = ds.items["genres"].to_numpy()
    is_comedy = np.array(["Comedy" in g for g in genres])
    inter = ds.interactions
    share = pd.Series(is_comedy[inter["iidx"].to_numpy()]).groupby(inter["user"].to_numpy()).agg(["size", "mean"])
    other = str(share[share["size"] >= 50]["mean"].idxmin())
    s_other = rec.score_items(user=other)
    rank_other = int((s_other > s_other[i]).sum()) + 1
    assert rank < rank_other, (rank, rank_other, other)


# ============================================================== broken model folders
def test_load_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="config.json") as e:
        Recommender.load(tmp_path)
    assert "Fix" in str(e.value)
    with pytest.raises(ModelError):
        Recommender.load(tmp_path / "does-not-exist")


def _copy_model(saved, dest):
    out, _ = saved
    shutil.copytree(out, dest, ignore=shutil.ignore_patterns("encoder"))
    return dest


@pytest.mark.parametrize(
    "content", [b"{not json", b"", lambda full: full[: len(full) // 2]], ids=["garbage", "empty", "truncated"]
)
def test_load_corrupted_config(saved, tmp_path, content):
    d = _copy_model(saved, tmp_path / "m")
    full = (d / "config.json").read_bytes()
    (d / "config.json").write_bytes(content(full) if callable(content) else content)
    with pytest.raises(ModelError, match="Fix"):
        Recommender.load(d)


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)),
        b"[]",
        b"null",
        b'{"format_version": 1}',
        b'{"format_version": 1, "config": {"no_such_option": 1}}',
    ],
    ids=["binary", "list", "null", "no-config", "unknown-option"],
)
def test_load_corrupted_config_other_forms(saved, tmp_path, content):
    d = _copy_model(saved, tmp_path / "m")
    (d / "config.json").write_bytes(content)
    with pytest.raises(ModelError):
        Recommender.load(d)


def test_load_wrong_format_version(saved, tmp_path):
    d = _copy_model(saved, tmp_path / "m")
    meta = json.loads((d / "config.json").read_text())
    meta["format_version"] = 999
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="Fix"):
        Recommender.load(d)


@pytest.mark.parametrize("missing", ["weights.safetensors", "items.json", "interactions.npz"])
def test_load_missing_part(saved, tmp_path, missing):
    d = _copy_model(saved, tmp_path / "m")
    (d / missing).unlink()
    with pytest.raises(ModelError, match=missing):
        Recommender.load(d)


def test_onnx_encoder_reads_a_few_texts_as_it_reads_them_alone_and_in_a_large_batch(saved):
    # A request's few texts are tokenized in this thread and padded here; a large batch goes through the
    # tokenizer's own batching: the same vectors either way, and each text as it reads alone.
    _, loaded = saved
    enc = loaded._query_encoder
    texts = ["a funny romantic comedy from the nineties", "comedy", "Item 120 or something like it, not too old"]
    few = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    large = enc.encode(texts + [f"filler text number {k}" for k in range(12)])[: len(texts)]
    np.testing.assert_allclose(few, alone, atol=1e-5)
    np.testing.assert_allclose(few, large, atol=1e-5)
