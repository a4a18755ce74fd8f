"""Candidate retrieval: faiss agrees with exact search, auto choice, save/load, Recommender integration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lucidrec.errors import ConfigError, ModelError
from lucidrec.models.features import N_POSITION_BUCKETS, N_RATING_BINS
from lucidrec.models.scoring import HybridScorer
from lucidrec.retrieval import INDEX_FILES, IndexConfig, Retriever, exact_top, resolve_kind

faiss = pytest.importorskip("faiss")


def clustered_scorer(n: int = 4000, d: int = 16, td: int = 48, seed: int = 0, item_item: bool = False):
    """Model weights with the structure real ones have: text vectors in clusters, latent vectors projected
    from them plus per-item noise, a small cross term."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, td))
    T = centres[rng.integers(40, size=n)] + 0.4 * rng.standard_normal((n, td))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    Wc = rng.standard_normal((td, d)) / np.sqrt(td)
    w = {
        "F": T @ Wc + 0.05 * rng.standard_normal((n, d)),
        "H": T @ Wc,
        "bias": 0.1 * rng.standard_normal(n),
        "T": T,
        "Wa": Wc,
        "rho_E": np.ones(N_RATING_BINS),
        "pi_E": np.ones(N_POSITION_BUCKETS),
        "rho_L": np.ones(N_RATING_BINS),
        "pi_L": np.ones(N_POSITION_BUCKETS),
        "alpha": np.array([0.5]),
        "W1": 0.05 * rng.standard_normal((3 * d, 8)),
        "b1": np.zeros(8),
        "w2": 0.05 * rng.standard_normal(8),
        "b2": np.zeros(1),
        "query_latent": np.ones(1),
        "query_text": np.ones(1),
    }
    B = (0.05 * rng.standard_normal((n, n))).astype(np.float32) if item_item else None
    return HybridScorer(w, B)


def user_states(scorer: HybridScorer, n_users: int = 40, seed: int = 1):
    """Users whose histories sit in one neighbourhood (as real users' do): items near a random item."""
    rng = np.random.default_rng(seed)
    T = scorer.w["T"]
    states = []
    for _ in range(n_users):
        anchor = int(rng.integers(scorer.n_items))
        near = np.argsort(-(T @ T[anchor]))[:50]
        states.append(scorer.user_state(rng.choice(near, size=8, replace=False)))
    return states


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)])


@pytest.fixture(scope="module")
def scorer():
    return clustered_scorer()


@pytest.mark.parametrize(
    "kind,options",
    [("ivf", {"nlist": 32, "nprobe": 12}), ("ivf", {"nlist": 32, "nprobe": 12, "storage": "sq8"}), ("hnsw", {})],
)
def test_faiss_agrees_with_exact_search(scorer, kind, options):
    r = Retriever.build(scorer, IndexConfig(kind=kind, text_dim=16, candidates=200, **options))
    states = user_states(scorer)
    q = r.vectors.users(states)
    assert overlap(r.search(q, 100), exact_top(scorer, r.vectors, q, 100)) > 0.9
    # End to end: the top-20 by the full score (cross term included) re-scored on the candidates only.
    cands = r.candidates(scorer, states, 20)
    hits = []
    for s, c in zip(states, cands):
        assert c is not None and len(c) >= 200
        full = np.argsort(-scorer.score(s))[:20]
        ann = c[np.argsort(-scorer.score(s, c))[:20]]
        hits.append(len(set(full) & set(ann)) / 20)
    assert np.mean(hits) > 0.95


def test_pca_of_the_text_block_keeps_the_ranking_close(scorer):
    """The index keeps F plus a PCA of T: the inner product it ranks by stays close to the full one."""
    full = Retriever.build(scorer, IndexConfig(kind="ivf", text_dim=None, nlist=16, nprobe=16))
    pca = Retriever.build(scorer, IndexConfig(kind="ivf", text_dim=16, nlist=16, nprobe=16))
    assert full.vectors.dim == 16 + 48 + 1 and pca.vectors.dim == 16 + 16 + 1
    states = user_states(scorer)
    exact_full = exact_top(scorer, full.vectors, full.vectors.users(states), 100)
    assert overlap(pca.search(pca.vectors.users(states), 100), exact_full) > 0.85


def test_auto_choice_by_catalog_size(scorer):
    assert resolve_kind(IndexConfig(), 49_999) == "exact"
    assert resolve_kind(IndexConfig(), 50_000) == "ivf"
    assert resolve_kind(IndexConfig(exact_threshold=1000), 4000) == "ivf"
    assert resolve_kind(IndexConfig(kind="hnsw"), 10) == "hnsw"
    small = Retriever.build(scorer, IndexConfig())  # 4,000 items < 50k: exact, no faiss index
    assert small.exact and small.index is None
    assert small.candidates(scorer, user_states(scorer, 3)) == [None, None, None]
    big = Retriever.build(scorer, IndexConfig(exact_threshold=1000))
    assert big.kind == "ivf" and big.info["nlist"] >= 1


def test_bad_options_raise_config_errors(scorer):
    with pytest.raises(ConfigError, match="kind"):
        IndexConfig(kind="annoy").validate()
    with pytest.raises(ConfigError, match="nprobe"):
        IndexConfig(nprobe=0).validate()
    with pytest.raises(ConfigError, match="storage"):
        IndexConfig(storage="pq").validate()
    with pytest.raises(ConfigError, match="unknown index option"):
        IndexConfig.from_dict({"nprob": 3})
    with pytest.raises(ConfigError, match="nlist"):
        Retriever.build(scorer, IndexConfig(kind="ivf", nlist=10_000))


def test_short_ivf_lists_are_widened_not_truncated(scorer):
    """nprobe=1 of 64 lists holds ~60 items: asking for 500 must still return 500 real candidates."""
    r = Retriever.build(scorer, IndexConfig(kind="ivf", nlist=64, nprobe=1, candidates=500, text_dim=16))
    cands = r.candidates(scorer, user_states(scorer, 5))
    assert all(c is not None and len(c) == 500 for c in cands)


def test_item_item_top_items_join_the_candidates():
    sc = clustered_scorer(n=1500, item_item=True)
    r = Retriever.build(sc, IndexConfig(kind="ivf", nlist=16, nprobe=4, candidates=50, text_dim=16))
    state = user_states(sc, 1)[0]
    cand = r.candidates(sc, [state])[0]
    top_e = np.argsort(-state.pE)[:50]
    assert set(top_e) <= set(cand)


def test_the_cross_terms_linear_part_in_the_query_brings_the_exact_top_into_the_candidates():
    sc = clustered_scorer(n=3000)
    rng = np.random.default_rng(4)
    d = sc.w["F"].shape[1]
    sc.w["W1"] = (0.8 * rng.standard_normal((3 * d, 8))).astype(np.float32)  # a cross term that matters
    sc.w["w2"] = (0.8 * rng.standard_normal(8)).astype(np.float32)
    states = user_states(sc, 30)
    exact = [np.argsort(-sc.score(s))[:20] for s in states]

    def recall(cross_sample: int) -> float:
        r = Retriever.build(
            sc, IndexConfig(kind="ivf", nlist=8, nprobe=8, text_dim=None, candidates=150, cross_sample=cross_sample)
        )
        return overlap(r.candidates(sc, states), exact)

    off, on = recall(0), recall(512)
    assert on > off + 0.05 and on > 0.9, (off, on)


def test_no_cross_term_means_no_linearisation(scorer):
    sc = clustered_scorer(n=500)
    sc.w["w2"] = np.zeros_like(sc.w["w2"])
    assert Retriever.build(sc, IndexConfig(kind="ivf", nlist=4)).vectors.cross_items is None
    assert Retriever.build(scorer, IndexConfig(kind="ivf", nlist=4)).vectors.cross_items is not None
    with pytest.raises(ConfigError, match="cross_sample"):
        IndexConfig(cross_sample=-1).validate()


def _random_neighbours(n: int, per_row: int, seed: int = 3):
    from scipy import sparse

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(n, size=n * per_row)
    vals = rng.standard_normal(n * per_row).astype(np.float32)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))


def test_neighbour_top_is_the_top_of_the_item_item_score():
    from lucidrec.retrieval import neighbour_top

    N = _random_neighbours(3000, 20)
    hist = np.array([5, 17, 17, 2999, 40])  # a repeated item counts twice, as in the score
    wE = np.array([1.0, 0.5, 0.25, 2.0, 0.7], np.float32)
    dense = np.asarray(N[hist].T @ wE).ravel()  # sum_j wE_j N[hist_j, :] over the catalog
    for m in (5, 30, 10_000):
        positive = np.flatnonzero(dense > 0)
        want = positive[np.argsort(-dense[positive])][:m]
        for scores in (None, dense.astype(np.float32)):  # computed from the rows, or read from pE
            got = neighbour_top(N, hist, wE, m, scores)
            assert len(got) == min(m, len(positive))
            assert set(got) == set(want)
    from scipy import sparse

    assert len(neighbour_top(sparse.csr_matrix((3000, 3000), dtype=np.float32), hist, wE, 5)) == 0


def test_sparse_neighbours_join_the_candidates(scorer):
    from lucidrec.retrieval import neighbour_top

    N = _random_neighbours(scorer.n_items, 30)
    r = Retriever.build(scorer, IndexConfig(kind="ivf", nlist=16, nprobe=2, candidates=50, neighbour_candidates=40))
    states = user_states(scorer, 5)
    for state, cand in zip(states, r.candidates(scorer, states, neighbours=N)):
        top_n = neighbour_top(N, state.hist, state.wE, 40)
        assert len(top_n) == 40 and set(top_n) <= set(cand)
        assert len(cand) >= 50 and len(set(cand)) == len(cand)
    # Without a block, or with neighbour_candidates=0, no neighbours are added: the index's candidates.
    assert all(len(c) == 50 for c in r.candidates(scorer, states))
    r.config.neighbour_candidates = 0
    assert all(len(c) == 50 for c in r.candidates(scorer, states, neighbours=N))


def test_the_scorers_own_sparse_block_gives_the_neighbour_candidates():
    from lucidrec.retrieval import neighbour_top

    base = clustered_scorer(n=2000)
    N = _random_neighbours(2000, 25, seed=8)
    sc = HybridScorer(dict(base.w), N)
    r = Retriever.build(sc, IndexConfig(kind="ivf", nlist=16, nprobe=2, candidates=50, neighbour_candidates=30))
    states = user_states(sc, 5)
    for state, cand in zip(states, r.candidates(sc, states)):  # neighbours read from the scorer, scores from pE
        top_n = neighbour_top(N, state.hist, state.wE, 30)
        assert len(top_n) == 30 and set(top_n) <= set(cand)


def test_large_catalogs_keep_the_text_block_in_float16_with_exact_decompositions(monkeypatch, tmp_path):
    import lucidrec.models.scoring as scoring

    monkeypatch.setattr(scoring, "TEXT_FLOAT16_FROM", 1000)
    monkeypatch.setattr(scoring, "_TEXT_CHUNK", 300)  # several chunks on the full-catalog path
    sc = clustered_scorer(n=1500)
    assert sc.w["T"].dtype == np.float16 and sc.w["F"].dtype == np.float32
    state = user_states(sc, 1)[0]
    full = sc.score(state)
    assert full.dtype == np.float32
    items = np.array([3, 700, 1499])
    np.testing.assert_allclose(sc.score(state, items), full[items], rtol=1e-5, atol=1e-6)
    for i, parts in zip(items, sc.decompose_many(state, items)):
        total = parts["history"].sum() + parts["query"] + parts["bias"] + parts["interaction"]
        assert total == pytest.approx(float(full[i]), abs=1e-4)
    # counterfactual re-scoring (several subsets at once) reads the float16 block the same way: exact for
    # each subset's target item and for every item scored above it
    from lucidrec.models.scoring import SubsetScorer

    keeps = np.ones((3, len(state.hist)), bool)
    keeps[1, 0] = keeps[2, -1] = False
    targets = np.array([int(np.argmax(full))] * 3)
    around = SubsetScorer(sc, state.hist).scores_around(keeps, targets)
    for k, keep in enumerate(keeps):
        exact = sc.score(sc.user_state(state.hist[keep]))
        above = exact >= exact[targets[k]] - 1e-6
        np.testing.assert_allclose(around[k, above], exact[above], rtol=1e-5, atol=1e-5)
    small = clustered_scorer(n=500)
    assert small.w["T"].dtype == np.float32  # below the threshold nothing changes


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "exact"])
def test_save_load_round_trip(scorer, tmp_path, kind):
    r = Retriever.build(scorer, IndexConfig(kind=kind, nlist=32, nprobe=8, text_dim=16))
    r.save(tmp_path)
    back = Retriever.load(tmp_path, scorer)
    assert back.kind == kind and back.config.nprobe == 8
    if kind != "exact":
        q = r.vectors.users(user_states(scorer, 10), scorer)
        np.testing.assert_array_equal(back.search(q, 50), r.search(q, 50))
        np.testing.assert_allclose(back.vectors.components, r.vectors.components)
        np.testing.assert_array_equal(back.vectors.cross_items, r.vectors.cross_items)
        np.testing.assert_allclose(back.vectors.users(user_states(scorer, 10), scorer), q)
    assert Retriever.load(tmp_path / "nothing-here") is None


def test_load_rejects_an_index_of_other_weights_and_broken_files(scorer, tmp_path):
    Retriever.build(scorer, IndexConfig(kind="ivf", nlist=16, text_dim=16)).save(tmp_path)
    with pytest.raises(ModelError, match="other model weights"):
        Retriever.load(tmp_path, clustered_scorer(seed=3))
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(ModelError, match="missing index.faiss"):
        Retriever.load(tmp_path, scorer)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable index settings"):
        Retriever.load(tmp_path, scorer)
    (tmp_path / "index.json").write_text(json.dumps({"format": 99, "kind": "ivf", "config": {}, "info": {}}))
    with pytest.raises(ModelError, match="format 99"):
        Retriever.load(tmp_path, scorer)


# ====================================================================== Recommender integration
@pytest.fixture(scope="module")
def tiny_rec(tmp_path_factory):
    pytest.importorskip("torch")
    from conftest import make_tiny_frames

    import lucidrec.data
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cache = str(tmp_path_factory.mktemp("cache"))
    return Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache).fit(ds, progress=False)


def test_recommender_builds_saves_and_loads_its_index(tiny_rec, tmp_path):
    from lucidrec.recommender import Recommender

    rec = tiny_rec
    state = rec._state_for(rec._known_history("u5"), None)
    assert rec.candidate_items(state, 10) is None  # no index: score exactly
    r = rec.build_index(kind="ivf", nlist=2, nprobe=1, candidates=20)
    cand = rec.candidate_items(state, 10)
    assert cand is not None and len(cand) >= 20 and len(set(cand)) == len(cand)
    out = rec.save(tmp_path / "m", export_encoder=False)
    assert all((out / f).exists() for f in INDEX_FILES)
    back = Recommender.load(out, load_encoder=False)
    assert back.retriever.kind == "ivf" and back.retriever.info == r.info
    np.testing.assert_array_equal(back.candidate_items(state, 10), cand)
    # An exact index: candidates are None, and the folder keeps only its settings.
    rec.build_index(kind="auto")
    assert rec.retriever.exact and rec.candidate_items(state, 10) is None
    rec.save(out, export_encoder=False)
    assert (out / "index.json").exists() and not (out / "index.faiss").exists()
    # Without an index, save removes a stale one.
    rec.drop_index()
    rec.save(out, export_encoder=False)
    assert not any((out / f).exists() for f in INDEX_FILES)
    assert Recommender.load(out, load_encoder=False).retriever is None


def test_a_float16_text_block_is_saved_and_loaded_as_float16(tiny_rec, tmp_path, monkeypatch):
    import copy

    import lucidrec.models.scoring as scoring
    from lucidrec.recommender import Recommender

    monkeypatch.setattr(scoring, "TEXT_FLOAT16_FROM", 10)
    rec = copy.copy(tiny_rec)
    rec.scorer = HybridScorer(dict(tiny_rec.scorer.w), tiny_rec.scorer.B)
    assert rec.scorer.w["T"].dtype == np.float16
    rec.drop_index()
    back = Recommender.load(rec.save(tmp_path / "m16", export_encoder=False), load_encoder=False)
    assert back.scorer.w["T"].dtype == np.float16
    np.testing.assert_array_equal(back.scorer.w["T"], rec.scorer.w["T"])
    state = rec._state_for(rec._known_history("u5"), None)
    np.testing.assert_allclose(back.scorer.score(state), rec.scorer.score(state), rtol=1e-6)


def test_ranking_candidates_gives_the_catalog_ranking_restricted_to_them(tiny_rec):
    rec = tiny_rec
    entries = rec._known_history("u5")
    state = rec._state_for(entries, None)
    everything = rec.rank(state, entries, k=10, candidates=None)["items"]
    all_items = np.arange(len(rec.item_ids))[::-1].copy()  # unsorted on purpose
    same = rec.rank(state, entries, k=10, candidates=all_items)["items"]
    assert [i["item_id"] for i in same] == [i["item_id"] for i in everything]
    some = all_items[::3]
    sub = rec.rank(state, entries, k=5, candidates=some)["items"]
    allowed = {str(rec.item_ids[i]) for i in some} - {str(rec.item_ids[e.item]) for e in entries}
    expected = [i["item_id"] for i in rec.rank(state, entries, k=len(rec.item_ids), candidates=None)["items"]]
    assert [i["item_id"] for i in sub] == [i for i in expected if i in allowed][:5]


def test_an_index_of_older_weights_is_refused(tiny_rec):
    import copy

    rec = copy.copy(tiny_rec)
    rec.build_index(kind="ivf", nlist=2)
    rec.scorer = HybridScorer(dict(rec.scorer.w), rec.scorer.B)  # as if retrained
    state = rec._state_for(rec._known_history("u5"), None)
    with pytest.raises(ModelError, match="build_index"):
        rec.candidate_items(state, 10)
