"""The concise item-item block (sparse non-negative elastic net): its fit, and how training chooses it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_tiny_frames

import lucidrec.data
from lucidrec.baselines import ease_weights
from lucidrec.errors import ConfigError
from lucidrec.models import concise
from lucidrec.models import item_item as ii


def planted(seed: int, users: int = 300, items: int = 40) -> sp.csr_matrix:
    """Random interactions plus pairs (2k, 2k+1) that always go together: each item's best predictor
    is its twin."""
    rng = np.random.default_rng(seed)
    x = rng.random((users, items)) < 0.05
    x[:, 1::2] = x[:, 0::2] = x[:, 0::2] | x[:, 1::2]
    return sp.csr_matrix(x.astype(np.float32))


@pytest.mark.parametrize("seed", range(3))
def test_weights_are_non_negative_sparse_with_zero_diagonal_and_find_the_twin(seed):
    x = planted(seed)
    B = concise.concise_item_item(x, 0.25)
    n = x.shape[1]
    assert B.shape == (n, n) and B.dtype == np.float32
    assert (B >= 0).all() and not np.diag(B).any()
    assert (B > 0).sum(axis=0).mean() < n / 4  # a few neighbours per item, unlike EASE's dense columns
    assert (np.abs(ease_weights(x, 10.0)) > 1e-6).sum(axis=0).mean() > n / 2
    twins = np.arange(n) ^ 1
    assert (B.argmax(axis=0) == twins).all()


def test_a_stronger_penalty_keeps_fewer_neighbours_and_is_scale_free():
    x = planted(5)
    counts = [(concise.concise_item_item(x, f) > 0).sum() for f in (0.05, 0.25, 1.0)]
    assert counts[0] > counts[1] > counts[2] > 0
    # The strength is relative to the data: twice the users (same pattern) give about the same block.
    x2 = sp.vstack([x, x]).tocsr()
    np.testing.assert_allclose(concise.concise_item_item(x2, 0.25), concise.concise_item_item(x, 0.25), atol=0.02)


def test_items_nobody_has_get_empty_columns_and_bad_settings_are_config_errors():
    x = planted(1).tolil()
    x[:, 3] = 0
    B = concise.concise_item_item(x.tocsr(), 0.25)
    assert not B[:, 3].any() and not B[3, :].any()
    for bad in ({"strength": 0.0}, {"strength": 0.25, "l1_ratio": 0.0}, {"strength": -1.0}):
        with pytest.raises(ConfigError, match="strength"):
            concise.concise_item_item(x.tocsr(), **bad)
    assert ii.resolve_kind("concise", 10) == "concise"


def _fit(tmp_path, kind: str):
    pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cfg = HybridConfig(epochs=2, dim=8, item_item_kind=kind)
    return Recommender(cfg, cache_dir=str(tmp_path / "cache")).fit(ds, progress=False)


def test_auto_compares_concise_with_dense_ease_on_validation(tmp_path):
    rec = _fit(tmp_path, "auto")
    info = rec.train_report["item_item"]
    assert info["kind"] in ("concise", "dense")
    if info["kind"] == "concise":
        # kept: within the tolerance of EASE's blended validation NDCG@10
        assert info["valid_ndcg@10"] >= (1 - rec.config.item_item_tolerance) * info["dense_ease_valid_ndcg@10"]
        assert info["strength"] in concise.GRID and (np.asarray(rec.scorer.B) >= 0).all()
    else:
        assert info["concise_valid_ndcg@10"] < (1 - rec.config.item_item_tolerance) * info["valid_ndcg@10"]


@pytest.mark.parametrize("kind", ["concise", "dense"])
def test_forced_kinds_serve_explain_and_round_trip(tmp_path, kind):
    from lucidrec.recommender import Recommender

    rec = _fit(tmp_path, kind)
    info = rec.train_report["item_item"]
    assert info["kind"] == kind and "dense_ease_valid_ndcg@10" not in info
    B = np.asarray(rec.scorer.B)
    if kind == "concise":
        assert (B >= 0).all() and rec.ease_reg is None
    else:
        assert (B < 0).any() and rec.ease_reg == info["reg"]
    loaded = Recommender.load(rec.save(tmp_path / "model"))
    np.testing.assert_array_equal(np.asarray(loaded.scorer.B), B)
    user = loaded.known.user_ids()[5]
    for it in loaded.recommend(user=user, k=5, explain=True)["items"]:
        assert sum(e["contribution"] for e in it["evidence"] if "contribution" in e) == pytest.approx(
            it["score"], abs=1e-4
        )


def test_a_separate_target_learns_every_interaction_from_the_input_items():
    """Liked-only input predicting every interaction: an item only ever in the target (never liked) gets a
    column learned from the input items and no row; with target = input it is the plain fit."""
    x = planted(2)
    inp = x.tolil()
    inp[:, 5] = 0  # item 5 is never an input (always disliked), still a target
    B = concise.concise_item_item(inp.tocsr(), 0.25, target=x)
    assert not B[5, :].any() and B[:, 5].any() and B[:, 5].argmax() == 4  # its twin predicts it
    np.testing.assert_array_equal(concise.concise_item_item(x, 0.25, target=x), concise.concise_item_item(x, 0.25))


class _RecordingNet:
    """The two things prefer_concise touches on a HybridNet: its block and the block's weights."""

    def __init__(self):
        self.B, self.weights = None, None

    def set_item_item_weights(self, rho, pi):
        self.weights = (np.asarray(rho), np.asarray(pi))


@pytest.mark.parametrize(("concise_ndcg", "keeps"), [(0.2475, True), (0.2530, True), (0.2470, False)])
def test_the_concise_block_is_kept_within_the_tolerance_else_ease_comes_back_with_its_weights(concise_ndcg, keeps):
    torch = pytest.importorskip("torch")
    from lucidrec.training import block_weights, prefer_concise

    net = _RecordingNet()
    B_ease, B_concise = np.full((3, 3), -1.0, np.float32), np.full((3, 3), 2.0, np.float32)
    ease_blend = {"weight": 3.0, "decay": 0.5, "low_rating_weight": 0.5, "valid_ndcg@10": 0.25}
    concise_blend = {"weight": 7.0, "decay": 1.0, "low_rating_weight": 1.0, "valid_ndcg@10": concise_ndcg}

    def blend():  # what blend_on_validation does to the net: weights for the block now in it
        net.set_item_item_weights(*block_weights(7.0, 1.0, 1.0))
        return concise_blend

    info, B, chosen = prefer_concise(
        net, {"kind": "dense", "reg": 300.0}, B_ease, ease_blend, {"kind": "concise", "strength": 0.25},
        B_concise, blend, 0.01,
    )  # fmt: skip
    want_B, want_blend = (B_concise, concise_blend) if keeps else (B_ease, ease_blend)
    assert info["kind"] == ("concise" if keeps else "dense") and B is want_B and chosen is want_blend
    np.testing.assert_array_equal(net.B.numpy(), want_B)
    rho, pi = block_weights(want_blend["weight"], want_blend["decay"], want_blend["low_rating_weight"])
    np.testing.assert_array_equal(net.weights[0], rho)
    np.testing.assert_array_equal(net.weights[1], pi)
    assert isinstance(net.B, torch.Tensor)
