"""The transformer term (issue 28): numpy serving equals the torch net, integrated gradients are complete,
the evidence still sums to the score, what-ifs are verified by re-scoring, and the term saves and loads."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lucidrec.models.scoring import HybridScorer, SubsetScorer  # noqa: E402
from lucidrec.models.transformer import (  # noqa: E402
    IG_MAX_NODES,
    IG_TOL,
    SequenceTransformer,
    export_weights,
    has_term,
)
from lucidrec.sasrec import _build_net  # noqa: E402


def random_term(n_items: int, dim: int = 16, max_len: int = 12, weight: float = 0.7, seed: int = 0) -> dict:
    """The arrays of an untrained SASRec net with livelier weights (larger item vectors, LayerNorms moved
    off the identity), so the attention and the norms are far from linear."""
    torch.manual_seed(seed)
    net = _build_net(torch, n_items, max_len, dim, 2, 2, 0.0).eval()
    with torch.no_grad():
        net.item.weight.mul_(10.0)
        net.pos.weight.mul_(10.0)
        for name, p in net.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return export_weights(net, max_len, 2, weight), net


def test_numpy_forward_is_the_torch_net():
    w, net = random_term(30)
    tf = SequenceTransformer(w)
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 30, size=n) for n in (1, 4, 12, 20)]
    h = tf.hidden(seqs)
    for s, got in zip(seqs, h):
        with torch.no_grad():
            want = net(torch.as_tensor(s[-12:][None] + 1))[0, -1].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
    # no history: the all-zero input's output, the prior every user shares
    np.testing.assert_allclose(tf.hidden([np.zeros(0, np.int64)])[0], tf.baseline(0))


@pytest.mark.parametrize("baseline", ["zero", "positions"])
def test_integrated_gradients_are_complete(baseline):
    w, _ = random_term(30)
    tf = SequenceTransformer(w, ig_baseline=baseline)
    rng = np.random.default_rng(2)
    for n in (1, 5, 12, 17):
        seq = rng.integers(0, 30, size=n)
        a, h = tf.attribute(seq)
        assert a.shape == (min(n, 12), tf.dim)
        r = h - tf.baseline(min(n, 12)) - a.sum(0)
        assert tf.ig_nodes < IG_MAX_NODES  # the rule met its tolerance, it did not stop at the cap
        # per item, through the item vectors: what the evidence uses, within the rule's tolerance
        assert tf.weight * np.abs(r @ tf.item.T).max() <= IG_TOL, (n, r)
        # the same window's second explanation reads the cache
        assert tf.attribute(seq)[0] is a


def test_the_baseline_is_the_positions_alone():
    """The integrated gradients start from the window's position embeddings with every item embedding
    zeroed: the torch net's output with its item embeddings zeroed, one vector per window length."""
    w, net = random_term(30)
    tf = SequenceTransformer(w, ig_baseline="positions")
    with torch.no_grad():
        net.item.weight.zero_()
    outs = []
    for n in (1, 5, 12):
        with torch.no_grad():
            want = net(torch.ones((1, n), dtype=torch.long))[0, -1].numpy()
        np.testing.assert_allclose(tf.baseline(n), want, atol=1e-5)
        outs.append(tf.baseline(n))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3 and np.abs(outs[1] - outs[2]).max() > 1e-3
    np.testing.assert_allclose(tf.baseline(40), tf.baseline(12))  # the window is at most max_len items
    # no history at all: the empty input's output, as hidden() gives it
    np.testing.assert_allclose(tf.hidden([np.zeros(0, np.int64)])[0], tf.baseline(0))


def test_the_zero_baseline_is_one_prior_for_every_window():
    w, _ = random_term(30)
    tf = SequenceTransformer(w)
    assert tf.ig_baseline == "zero"  # the default
    for n in (0, 1, 7, 12):
        np.testing.assert_allclose(tf.baseline(n), tf.hidden([np.zeros(0, np.int64)])[0])
    with pytest.raises(ValueError):
        SequenceTransformer(w, ig_baseline="mean")


def test_forward_derivatives_match_finite_differences():
    """The sparse (position, item) tangents give each item's directional derivative of h at the last position."""
    w, _ = random_term(30)
    tf = SequenceTransformer(w)
    seq = np.random.default_rng(3).integers(0, 30, size=9)
    P, V = tf.pos[:9], tf.item[seq] * np.sqrt(tf.dim)
    x = np.stack([P + 0.2 * V, P + 0.9 * V])
    got = tf._jvp_last(x, V)
    assert got.shape == (2, 9, tf.dim)
    eps = 1e-6
    for b in range(2):
        for j in range(9):
            up, down = x[b : b + 1].copy(), x[b : b + 1].copy()
            up[0, j] += eps * V[j]
            down[0, j] -= eps * V[j]
            fd = (tf._forward(up, last=True)[0, -1] - tf._forward(down, last=True)[0, -1]) / (2 * eps)
            np.testing.assert_allclose(got[b, j], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))


def _scorer(n: int = 25) -> HybridScorer:
    from lucidrec.models.features import N_POSITION_BUCKETS as NP
    from lucidrec.models.features import N_RATING_BINS as NR
    from lucidrec.models.scoring import WEIGHT_NAMES

    rng = np.random.default_rng(4)
    d, td, h = 6, 8, 5
    shapes = {
        "F": (n, d), "H": (n, d), "bias": (n,), "T": (n, td), "Wa": (td, d), "rho_E": (NR,), "pi_E": (NP,),
        "rho_L": (NR,), "pi_L": (NP,), "alpha": (1,), "W1": (3 * d, h), "b1": (h,), "w2": (h,), "b2": (1,),
        "query_latent": (1,), "query_text": (1,),
    }  # fmt: skip
    assert set(shapes) == set(WEIGHT_NAMES)
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    w["pi_E"] = np.abs(w["pi_E"]) + 0.1
    B = rng.standard_normal((n, n)).astype(np.float32) * 0.1
    np.fill_diagonal(B, 0.0)
    return HybridScorer({**w, **random_term(n)[0]}, B)


@pytest.mark.parametrize("baseline", ["zero", "positions"])
def test_evidence_sums_to_the_score_with_the_term(baseline):
    sc = _scorer()
    assert sc.tf is not None
    sc.tf.ig_baseline = baseline
    rng = np.random.default_rng(5)
    for n in (0, 3, 15):
        hist = rng.choice(25, size=n, replace=False)
        state = sc.user_state(hist, rng.integers(1, 6, size=n).astype(float))
        items = np.arange(25)
        total = sc.score(state, items).astype(np.float64)
        for i, parts in zip(items, sc.decompose_many(state, items)):
            summed = parts["history"].sum() + parts["query"] + parts["bias"] + parts["interaction"]
            assert abs(summed - total[i]) <= 1e-5 * max(1.0, abs(total[i]))
            # the unnamed remainder is only float and quadrature error
            assert abs(parts["interaction"]) <= 1e-4
        # a history item outside the window gets nothing from the term, those inside do
        if n > sc.tf.max_len:
            assert len(state.tf_pos) == sc.tf.max_len and state.tf_pos[0] == n - sc.tf.max_len


def test_what_if_rescoring_reruns_the_transformer():
    sc = _scorer()
    rng = np.random.default_rng(6)
    hist = rng.choice(25, size=14, replace=False)
    ratings = rng.integers(1, 6, size=14).astype(float)
    subsets = SubsetScorer(sc, hist, ratings)
    keeps = np.ones((4, 14), bool)
    keeps[0, 13] = False  # the most recent item
    keeps[1, :3] = False  # items outside the window: the window slides back
    keeps[2, [2, 7, 11]] = False
    items = np.array([0, 5, 9, 20])
    got = subsets.scores_around(keeps, items)
    for k, keep in enumerate(keeps):
        want = sc.score(sc.user_state(hist[keep], ratings[keep]))
        assert abs(got[k, items[k]] - want[items[k]]) <= 1e-4
        top = np.argsort(-want)[:5]  # everything ranked above the target is exact too
        above = top[want[top] > want[items[k]]]
        np.testing.assert_allclose(got[k, above], want[above], atol=1e-4)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from conftest import make_tiny_frames

    import lucidrec.data
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cache = str(tmp_path_factory.mktemp("cache"))
    cfg = HybridConfig(epochs=2, dim=8, mode="seq", transformer=True, transformer_minutes=0.02)
    return Recommender(cfg, cache_dir=cache).fit(ds, progress=False)


def test_fit_trains_the_term_and_reports_its_validation(tiny_model):
    rep = tiny_model.train_report["transformer"]
    assert {"kept", "weight", "valid_ndcg@10", "without_valid_ndcg@10", "valid_grid"} <= set(rep)
    assert rep["valid_ndcg@10"] >= rep["without_valid_ndcg@10"]  # c = 0 is on the grid
    assert has_term(tiny_model.scorer.w) == rep["kept"]


def test_a_model_with_the_term_explains_exactly_and_saves_and_loads(tiny_model, tmp_path):
    from conftest import rank_among

    from lucidrec.history_inputs import user_state
    from lucidrec.recommender import Recommender

    rec = tiny_model
    n = rec.scorer.n_items
    rec.scorer = HybridScorer({**{k: v for k, v in rec.scorer.w.items() if not k.startswith("seq_tf.")},
                               **random_term(n, weight=0.5)[0]}, rec.scorer.B)  # fmt: skip
    out = rec.recommend(user="u5", k=5, explain=True, counterfactual=True)
    checked = 0
    for it in out["items"]:
        total = sum(e.get("contribution", 0.0) for e in it["evidence"])
        assert abs(total - it["score"]) <= 1e-4 * max(1.0, abs(it["score"]))
        cf = it.get("counterfactual")
        if cf is not None:  # verified: re-score the history without the removed items (the transformer re-runs)
            entries = rec._known_history("u5")
            kept = [e for e in entries if str(rec.item_ids[e.item]) not in cf["removed"]]
            scores = rec.scorer.score(user_state(rec.scorer, kept, None, rec.catalogue.implicit_event))
            allowed = np.ones(n, bool)
            allowed[[e.item for e in entries]] = False
            assert rank_among(scores, allowed, rec.catalogue.item_idx(it["item_id"])) == cf["new_rank"] > 5
            checked += 1
    assert checked
    back = Recommender.load(rec.save(tmp_path / "m", export_encoder=False), load_encoder=False)
    assert has_term(back.scorer.w)
    again = back.recommend(user="u5", k=5, explain=True, counterfactual=True)
    assert [(i["item_id"], round(i["score"], 5)) for i in again["items"]] == [
        (i["item_id"], round(i["score"], 5)) for i in out["items"]
    ]


def test_the_kept_weight_is_the_smallest_within_reach_of_the_best():
    from lucidrec.training import pick_transformer_weight

    grid = [{"c": 0.0, "ndcg@10": 0.1239}, {"c": 4.0, "ndcg@10": 0.1359}, {"c": 8.0, "ndcg@10": 0.1377},
            {"c": 64.0, "ndcg@10": 0.1383}]  # fmt: skip
    assert pick_transformer_weight(grid)["c"] == 8.0  # 0.1377 >= 0.99 * 0.1383; 0.1359 is not
    assert pick_transformer_weight(grid, within=0.0)["c"] == 64.0
    assert pick_transformer_weight(grid, within=0.2)["c"] == 0.0  # no term when that is as good


def test_the_term_is_tried_on_next_item_data_unless_turned_off():
    """`lucidrec train --protocol loo` (mode "seq") tries the term by default, as it does the sequential
    block; set and mixed data only when asked; --no-transformer, rating-aware training and catalogues above
    the dense block's size never."""
    from lucidrec.models.config import HybridConfig
    from lucidrec.models.item_item import DENSE_MAX_ITEMS
    from lucidrec.training import _tries_transformer

    assert _tries_transformer(HybridConfig(mode="seq"), 100)
    assert not _tries_transformer(HybridConfig(mode="set"), 100)
    assert not _tries_transformer(HybridConfig(mode="mixed"), 100)
    assert _tries_transformer(HybridConfig(mode="set", transformer=True), 100)
    assert not _tries_transformer(HybridConfig(mode="seq", transformer=False), 100)
    assert not _tries_transformer(HybridConfig(mode="seq", rating_aware=True), 100)
    assert not _tries_transformer(HybridConfig(mode="seq"), DENSE_MAX_ITEMS + 1)
