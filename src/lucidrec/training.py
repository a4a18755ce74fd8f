"""Training (needs torch, ``lucidrec[train]``): encode item text, fit the closed-form item-item block, train
the towers, blend the two on validation, calibrate the query's weight; :func:`fit` returns the
:class:`lucidrec.artifact.TrainedModel`.

The steps of :func:`fit`, in order:
1. frozen language-model embeddings of the item text (cached on disk) and the item features;
2. the item-item block (dense EASE, or the sparse N-neighbour block on large catalogues:
   :mod:`lucidrec.models.item_item`), its kind, regularisation and N chosen on validation; on a dense
   catalogue also the concise block (:mod:`lucidrec.models.concise`) and its strength;
3. the towers (latent + text + bias + CLS), full softmax, early stopping on validation NDCG@10;
4. :func:`blend_on_validation` - the block's weight and recency decay in ``c * item_item + towers``;
   :func:`prefer_concise` keeps the concise block when its blend is within 1% of EASE's; on next-item
   data :func:`blend_sequential` mixes a closed-form transition block (:mod:`lucidrec.models.sequential`)
   into the item-item block when that wins on validation;
5. the block refit on train+valid, so the served model knows every interaction it was given;
6. :func:`calibrate_query` - a query moves scores about as much as a typical history does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.artifact import ModelMeta, TrainedModel
from lucidrec.catalog import Catalogue
from lucidrec.history_inputs import user_state
from lucidrec.models.scoring import DISLIKE_MARGIN, RATING_SLOPE, HybridScorer
from lucidrec.models.transformer import PREFIX as PREFIX_TF
from lucidrec.user_history import KnownHistories

if TYPE_CHECKING:
    import pandas as pd

    from lucidrec.data.dataset import Dataset


def fit(
    config,
    dataset: Dataset,
    train: pd.DataFrame | None = None,
    valid: pd.DataFrame | None = None,
    progress: bool = True,
    refit_item_item: bool = True,
    log_dir: str | None = None,
    encoder_name: str | None = None,
    cache_dir: str | None = None,
) -> TrainedModel:
    """Train a model with ``config`` (a :class:`lucidrec.models.config.HybridConfig`; see the module docstring
    for the steps). ``encoder_name``: the item-text encoder (default: the packaged MiniLM); ``cache_dir``:
    where item-text embeddings are cached."""
    import pandas as pd

    from lucidrec.data.text import ItemTextBuilder
    from lucidrec.encoders import CachedEncoder, SentenceTransformerEncoder
    from lucidrec.metrics import RankingAccumulator
    from lucidrec.models.features import FeatureSpace
    from lucidrec.models.hybrid import HybridNet, Sequences, _require_torch, pad_histories, train_hybrid
    from lucidrec.splits import Split

    _require_torch()

    t0 = time.perf_counter()
    cfg = config
    if train is None:
        train, valid = holdout(dataset.interactions, cfg.seed) if valid is None else (dataset.interactions, valid)
    elif valid is None:
        train, valid = holdout(train, cfg.seed)
    require_training_data(dataset, train, valid)
    catalogue = Catalogue.from_dataset(dataset)

    # 1. frozen language-model embeddings of the item text (cached on disk)
    text_encoder = SentenceTransformerEncoder(encoder_name)
    T = CachedEncoder(text_encoder, cache_dir).encode(ItemTextBuilder().build(dataset), progress=progress)
    feature_space = FeatureSpace.fit(dataset)
    G = feature_space.transform(dataset)

    # 2. the closed-form item-item block, its regularisation chosen on validation
    split = Split(dataset, "custom", train, valid, valid.iloc[:0])
    margin = cfg.dislike_margin if cfg.rating_aware else None
    block_info, B, concise, transition = reuse_blocks(cfg, split, T, lambda: closed_form_blocks(cfg, split, T, margin))

    # 3. the towers, trained with full softmax; early stopping on validation NDCG@10
    has_id = seen_items(train, dataset.n_items).astype(np.float32)
    net = HybridNet(dataset.n_items, T, G, B, has_id, cfg)
    seqs = Sequences.from_frame(train, dataset.n_users)
    # Validation users' padded train histories, built once: every epoch and the blend search reuse them.
    valid_users = np.unique(valid["uidx"].to_numpy())
    chunks = [
        (us, pad_histories([seqs.items[u] for u in us], [seqs.ratings[u] for u in us], margin, cfg.rating_slope))
        for us in np.array_split(valid_users, max(1, -(-len(valid_users) // 256)))
    ]
    valid_rel = dataset.matrix(valid)
    train_hist = dataset.matrix(train)

    def validate(model) -> float:
        acc = RankingAccumulator(dataset.n_items, ks=(10,), auc=False)
        for us, batch in chunks:
            acc.add(model(*batch).numpy(), valid_rel[us], train_hist[us])
        return acc.result()["ndcg@10"]

    report = train_hybrid(net, seqs, cfg, validate, progress=progress, log_dir=log_dir)
    # 4. blend the block in on validation
    if B is not None:
        blend = blend_on_validation(net, chunks, valid_rel, train_hist, dataset.n_items)
        if concise is not None:
            block_info, B, blend = prefer_concise(
                net, block_info, B, blend, *concise,
                lambda: blend_on_validation(net, chunks, valid_rel, train_hist, dataset.n_items),
                cfg.item_item_tolerance,
            )  # fmt: skip
        if transition is not None:
            seq = blend_sequential(net, chunks, valid_rel, train_hist, dataset.n_items, B, transition[1], blend)
            fitted = {k: transition[0][k] for k in ("decay", "reg")}
            report["sequential"] = {
                "kept": seq is not None,
                "share": seq["sequential"]["share"] if seq else 0.0,
                "valid_ndcg@10": seq["valid_ndcg@10"] if seq else None,
                "set_block_valid_ndcg@10": blend["valid_ndcg@10"],
                "transition_block": transition[0],
            }
            if seq is not None:  # validation prefers the block with the transition part mixed in
                block_info = {**block_info, "sequential": {**fitted, **seq["sequential"]}}
                B = mixed_block(B, transition[1], block_info["sequential"])
                blend = {k: v for k, v in seq.items() if k != "sequential"}
        report["item_item"] = {**block_info, **blend}
    # 4b. the transformer term, its weight chosen on validation
    tf_weights: dict = {}
    if _tries_transformer(cfg, dataset.n_items):
        tf_weights, report["transformer"] = transformer_term(cfg, dataset, train, valid, net, chunks, seqs.items,
                                                             valid_rel, train_hist)  # fmt: skip
    ease_reg = block_info.get("reg") if block_info else None
    weights = net.export()
    # 5. refit the block on everything the model was given
    if cfg.item_item and refit_item_item:
        B = item_item_block(dataset, pd.concat([train, valid]), T, block_info)
    extra = {"query_latent": np.ones(1, np.float32), "query_text": np.ones(1, np.float32)}
    if margin is not None:
        extra[DISLIKE_MARGIN] = np.array([margin], np.float32)
        extra[RATING_SLOPE] = np.array([cfg.rating_slope], np.float32)
    model = TrainedModel(
        config=cfg,
        catalogue=catalogue,
        scorer=HybridScorer({**weights, **extra, **tf_weights}, B),
        known=KnownHistories.from_frame(catalogue.item_ids, pd.concat([train, valid], ignore_index=True)),
        text_encoder=text_encoder,
        net=net,
    )
    # 6. the query's weight
    calibrate_query(model, T)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["ease_reg"] = ease_reg
    return model.replace(meta=ModelMeta(report, ease_reg, feature_space.to_dict(), text_encoder.name))


def understand(model: TrainedModel, dataset: Dataset, progress: bool = False) -> TrainedModel:
    """``model`` with the request understanding (multilingual encoder, grounding of the catalogue's values,
    calibrated on the catalogue itself; :mod:`lucidrec.understanding`) built for ``dataset``'s catalogue."""
    from lucidrec.data.text import ItemTextBuilder, item_fields
    from lucidrec.understanding import RequestUnderstanding

    has_text = model.text_encoder is not None
    understanding = RequestUnderstanding.build(
        item_fields(dataset),
        ItemTextBuilder().build(dataset),
        dataset.titles(),
        progress=progress,
        # The second reader: the model's own item-text encoder, over the item text vectors it was trained on
        # (the request pipeline connects it: lucidrec.pipeline.serving.Pipeline).
        text_encoder=model.text_encoder if has_text else None,
        text_vecs=model.scorer.w["T"] if has_text else None,
    )
    understanding.fit_query_map(model.scorer.w["T"])
    return model.replace(understanding=understanding)


def _tries_transformer(cfg, n_items: int) -> bool:
    """The transformer term is tried on next-item data (mode "seq", what ``lucidrec train --protocol loo``
    trains) unless ``cfg.transformer`` is False, and on any data when it is True; on catalogues up to the
    dense block's size (its validation scores every item), never with rating-aware training. Validation then
    chooses its weight, 0 (no term) included. It lifts next-item accuracy (ML-100K loo NDCG@10 0.0934 ->
    0.1073, 3 seeds) and its reasons still name what decides: a reason with a verified what-if names that
    set alone when the supporters beside it would not decide with it, and the what-if search ends with a
    re-scored greedy search where the linear prediction misses (seed 2028, 40 users, PN of the named items
    0.998 with the term vs 1.000 without; benchmarks/results/explanations_loo_ml100k*.md). Explaining a
    request integrates the transformer's gradients over the window (about 1 s, where the linear blocks
    explain in milliseconds); ``--no-transformer`` trains without it."""
    from lucidrec.models.item_item import DENSE_MAX_ITEMS

    wanted = cfg.transformer if cfg.transformer is not None else cfg.mode == "seq"
    return bool(wanted) and not cfg.rating_aware and n_items <= DENSE_MAX_ITEMS


#: Weights of the transformer term tried on validation, in units of (spread of the rest of the score) /
#: (spread of the term); 0 = no term.
TRANSFORMER_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 64.0)
#: The weight kept is the smallest of the grid whose validation NDCG@10 is within this share of the best one:
#: the term then carries less of the score, so the linear parts' concentrated evidence keeps more of it. On
#: ML-100K loo (seed 2028, validation best at 64 x spread, 8 within 1%): test NDCG@10 0.1085 -> 0.1148, PN of
#: the items reasons name 0.892 -> 0.922 (benchmarks/results/explanations_loo_ml100k*.md); seeds 2026-2028
#: (8 / 3 / 64 -> 2 / 3 / 8 x spread): 0.1071 -> 0.1073 (benchmarks/results/accuracy_side_by_side_loo.md).
TRANSFORMER_WITHIN = 0.01


def pick_transformer_weight(tried: list[dict], within: float = TRANSFORMER_WITHIN) -> dict:
    """The grid point kept: the smallest weight ``c`` whose validation NDCG@10 is within ``within`` (a share)
    of the best one (``c = 0``, no term, when that is)."""
    top = max(g["ndcg@10"] for g in tried)
    return min((g for g in tried if g["ndcg@10"] >= (1.0 - within) * top), key=lambda g: g["c"])


def transformer_term(cfg, dataset, train, valid, net, chunks, train_seqs, valid_rel, train_hist) -> tuple[dict, dict]:
    """Train the transformer term (:func:`lucidrec.models.transformer.train_term`, early stopping on
    ``valid``) and choose its weight ``c`` in ``score = rest + c * h . e_i`` on validation NDCG@10
    (:func:`pick_transformer_weight`), the rest being the blended model as it stands (towers, item-item block,
    cross term). Returns (its weights for the
    scorer, {} when validation keeps c = 0; a report)."""
    import torch

    from lucidrec.metrics import RankingAccumulator
    from lucidrec.models.transformer import SequenceTransformer, export_weights, train_term

    t0 = time.perf_counter()
    sas = train_term(dataset, train, valid, cfg.seed, cfg.transformer_minutes)
    weights = export_weights(sas.net, sas.max_len, sas.n_heads, 1.0)
    tf = SequenceTransformer(weights)
    with torch.no_grad():
        rest = [net(*batch).numpy().astype(np.float64) for _, batch in chunks]
    term = [tf.hidden([train_seqs[u] for u in us]) @ tf.item.T for us, _ in chunks]
    spread_r = float(np.median([np.std(r, axis=1).mean() for r in rest])) or 1.0
    spread_t = float(np.median([np.std(t, axis=1).mean() for t in term])) or 1.0
    tried = []
    for c in TRANSFORMER_GRID:
        acc = RankingAccumulator(dataset.n_items, ks=(10,), auc=False)
        for k, (us, _) in enumerate(chunks):
            acc.add(rest[k] + c * spread_r / spread_t * term[k], valid_rel[us], train_hist[us])
        tried.append({"c": c, "ndcg@10": acc.result()["ndcg@10"]})
    best = pick_transformer_weight(tried)
    top = max(g["ndcg@10"] for g in tried)
    weight = best["c"] * spread_r / spread_t
    report = {
        "kept": weight > 0,
        "weight": weight,
        "relative_weight": best["c"],
        "valid_ndcg@10": best["ndcg@10"],
        "best_valid_ndcg@10": top,
        "within": TRANSFORMER_WITHIN,
        "without_valid_ndcg@10": tried[0]["ndcg@10"],
        "alone_valid_ndcg@10": sas.report["best_valid_ndcg@10"],
        "valid_grid": tried,
        "max_len": sas.max_len,
        "dim": sas.dim,
        "dropout": sas.dropout,
        "lr": sas.lr,
        "best_epoch": sas.report["best_epoch"],
        "epochs": len(sas.report["epochs"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if weight <= 0:
        return {}, report
    weights[f"{PREFIX_TF}weight"] = np.array([weight], np.float32)
    return weights, report


def choose_item_item(cfg, split) -> dict:
    """The item-item block's kind (dense EASE / sparse N-neighbour, by catalogue size unless the config
    says), regularisation and neighbour count, chosen on validation NDCG@10 of the block alone.

    Dense: reg from the EASE grid. Sparse (catalogues up to ``SELECT_MAX_ITEMS``): reg from ``REG_GRID`` at
    N = ``neighbors`` or ``DEFAULT_NEIGHBORS``, then N from ``neighbor_grid(n)`` at that reg (a coordinate
    search: each grid point is one fit). Above ``SELECT_MAX_ITEMS`` nothing is searched: N is the largest
    of ``neighbor_grid(n)`` (cost-bounded) and reg ``DEFAULT_REG``, unless the config sets them."""
    from lucidrec.baselines import EASE
    from lucidrec.evaluate import choose_on_validation, evaluate_scorer
    from lucidrec.models import item_item as ii

    n = split.dataset.n_items
    kind = ii.resolve_kind(cfg.item_item_kind, n)
    ii.check_neighbors(cfg.neighbors)
    if kind == "concise":
        return choose_concise(split)[0]
    if kind == "dense":
        reg = cfg.ease_reg
        if reg is None:
            # 20 and 50 for sparse catalogues (both Amazon ones choose 50 or less); ML-100K picks 300-500.
            grid = [{"reg": r} for r in (20.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)]
            reg = choose_on_validation(EASE, grid, split, ks=(10,))["reg"]
        return {"kind": "dense", "reg": float(reg), "neighbors": None}
    reg, nb = cfg.ease_reg, cfg.neighbors
    if n > ii.SELECT_MAX_ITEMS:
        # No search: the largest N within the cost bound (32 at 1M items) and the default reg.
        nb = nb or max(ii.neighbor_grid(n))
        return {"kind": "sparse", "reg": float(reg or ii.DEFAULT_REG), "neighbors": int(nb)}
    # The evaluation scores (users x n) densely: keep each batch near 20M floats on large catalogues.
    batch = max(16, min(1024, 20_000_000 // n))

    def ndcg(r: float, k: int) -> float:
        scorer = ii.SparseEASE(r, k).fit(split.dataset, split.train)
        return evaluate_scorer(scorer, split, "valid", ks=(10,), batch_size=batch)["ndcg@10"]

    tried: dict = {}
    if reg is None:
        n0 = nb or ii.DEFAULT_NEIGHBORS
        for r in ii.REG_GRID:
            tried[(r, n0)] = ndcg(r, n0)
        reg = max((k for k in tried if k[1] == n0), key=tried.get)[0]
    if nb is None:
        for k in ii.neighbor_grid(n):
            if (reg, k) not in tried:
                tried[(reg, k)] = ndcg(reg, k)
        nb = max((k for k in tried if k[0] == reg), key=tried.get)[1]
    return {
        "kind": "sparse",
        "reg": float(reg),
        "neighbors": int(nb),
        "valid_grid": [{"reg": r, "neighbors": k, "ndcg@10": v} for (r, k), v in tried.items()],
    }


def _tries_concise(cfg, block_info: dict | None, margin) -> bool:
    """The concise block competes where "auto" chose dense EASE, in a model that is not rating-aware
    ("concise" forces it; "dense" keeps EASE)."""
    return block_info is not None and margin is None and cfg.item_item_kind == "auto" and block_info["kind"] == "dense"


def closed_form_blocks(cfg, split, T: np.ndarray, margin):
    """Step 2: (block info, block fit on train, concise candidate or None, transition candidate or None),
    each chosen on validation. None of it depends on the seed."""
    dataset, train = split.dataset, split.train
    block_info, B, concise = None, None, None
    if cfg.item_item:
        if margin is not None:
            block_info = rating_aware_block_info(dataset, train, split.valid, cfg)
        elif cfg.item_item_kind == "concise":
            block_info, B = choose_concise(split, T)
        else:
            block_info = choose_item_item(cfg, split)
        if B is None:
            B = item_item_block(dataset, train, T, block_info)
    # The concise block (info, block fit on train) competes with dense EASE after the towers are trained.
    if _tries_concise(cfg, block_info, margin):
        concise = choose_concise(split, T)
    # The sequential part (a closed-form transition block), its decay and reg chosen on validation; the
    # blend decides after the towers are trained whether, and how much of it, joins the item-item block.
    transition = None
    if _tries_sequential(cfg, block_info, margin, dataset.n_items):
        from lucidrec.models.sequential import choose_transition_block

        seq_info, S = choose_transition_block(split)
        transition = (seq_info, impute_cold_item_item(S, T, seen_items(train, dataset.n_items)))
    return block_info, B, concise, transition


#: Benchmarks that train several seeds on one split set this to True: the closed-form blocks of step 2
#: (seed-independent) are then fit once and reused while the split, text and settings are the same. Off by
#: default, so a library process never holds a catalogue-sized block after training.
REUSE_BLOCKS_ACROSS_SEEDS = False
_reused: dict = {}


def reuse_blocks(cfg, split, T: np.ndarray, compute):
    """``compute()``, or its earlier result for the same split, text and block settings when
    :data:`REUSE_BLOCKS_ACROSS_SEEDS` is on (a deep copy: nothing downstream can change the kept one)."""
    if not REUSE_BLOCKS_ACROSS_SEEDS:
        return compute()
    import copy
    import hashlib

    h = hashlib.sha1(np.ascontiguousarray(T).tobytes())
    for frame in (split.train, split.valid):
        for col in ("uidx", "iidx", "timestamp", "rating"):
            if col in frame:
                h.update(np.ascontiguousarray(frame[col].to_numpy()).tobytes())
    settings = {k: v for k, v in cfg.to_dict().items() if k in _BLOCK_SETTINGS}
    key = (split.dataset.n_users, split.dataset.n_items, h.hexdigest(), tuple(sorted(settings.items())))
    if _reused.get("key") != key:
        _reused.clear()
        _reused.update(key=key, value=compute())
    return copy.deepcopy(_reused["value"])


#: The config fields step 2 reads.
_BLOCK_SETTINGS = (
    "item_item", "item_item_kind", "ease_reg", "neighbors", "rating_aware", "dislike_margin", "rating_slope",
    "item_item_neighbours", "item_item_tolerance", "sequential", "mode",
)  # fmt: skip


def _tries_sequential(cfg, block_info: dict | None, margin, n_items: int) -> bool:
    """The transition block is tried on next-item data (mode "seq", ``cfg.sequential`` None) or when forced
    (True), with a dense or concise item-item block in a model that is not rating-aware. Mixed in, it gives
    the block signed entries (a concise block alone is non-negative), so "set" and "mixed" keep it off."""
    from lucidrec.models.item_item import DENSE_MAX_ITEMS

    wanted = cfg.sequential if cfg.sequential is not None else cfg.mode == "seq"
    return (
        bool(wanted)
        and block_info is not None
        and margin is None
        and block_info["kind"] in ("dense", "concise")
        and n_items <= DENSE_MAX_ITEMS
    )


def mixed_block(B: np.ndarray, S: np.ndarray, info: dict) -> np.ndarray:
    """The served item-item block with the transition part mixed in: one matrix,
    ``(1 - share) * B / spread_B + share * S / spread_S`` (each part at unit score spread)."""
    share = float(info["share"])
    return ((1.0 - share) * info["set_scale"] * B + share * info["seq_scale"] * S).astype(np.float32)


def blend_sequential(net, chunks, valid_rel, train_hist, n_items: int, B, S, base: dict) -> dict | None:
    """Mix the transition block ``S`` into the item-item block ``B`` (both fit on train):
    ``score = c * x_w (share * S' + (1 - share) * B') + towers``, with B', S' each scaled to unit score
    spread and the history weights ``x_w`` a recency profile per position bucket (the per-position decays
    of :data:`lucidrec.models.sequential.SERVE_DECAYS`). ``c``, ``share`` (0 to 1) and
    the profile are chosen on validation NDCG@10. Returns the blend (with ``profile`` and a ``sequential``
    part for :func:`mixed_block`) when it beats ``base`` (the set block's blend) on validation, else None;
    ``net``'s block and weights are left as ``base`` set them unless the mix wins (then the caller sets
    the mixed block; its weights are applied here)."""
    import torch

    from lucidrec.metrics import RankingAccumulator
    from lucidrec.models.hybrid import _history_masks
    from lucidrec.models.sequential import SERVE_DECAYS, position_profile

    use_b, b_before = net.use_B, net.B
    net.use_B = False
    with torch.no_grad():
        towers = [net(*batch).numpy() for _, batch in chunks]
    net.use_B = use_b
    rho = torch.as_tensor(block_weights(1.0, 1.0, base["low_rating_weight"])[0])
    Bt, St = torch.as_tensor(np.asarray(B), dtype=torch.float32), torch.as_tensor(S, dtype=torch.float32)

    def part_scores(M, profile) -> list[np.ndarray]:
        out = []
        prof = torch.as_tensor(profile, dtype=torch.float32)
        for _, (hist, rb, pb, mask, liked) in chunks:
            w = rho[rb] * prof[pb] * _history_masks(mask, liked)[1]
            with torch.no_grad():
                x = torch.zeros(hist.shape[0], n_items).scatter_add_(1, hist, w)
                out.append((x @ M).numpy())
        return out

    def spread(parts) -> float:
        return float(np.mean([np.std(p, axis=1).mean() for p in parts])) or 1.0

    spread_t = float(np.median([np.std(t, axis=1).mean() for t in towers])) or 1.0
    ref = position_profile(max(SERVE_DECAYS))
    set_scale, seq_scale = 1.0 / spread(part_scores(Bt, ref)), 1.0 / spread(part_scores(St, ref))
    # The base blend already tried the coarse per-bucket decays; these weigh each position (share 0: the
    # set block alone under a per-position recency profile).
    profiles = [(f"position {d:g}", position_profile(d)) for d in SERVE_DECAYS]
    best = None
    for name, profile in profiles:
        sb, ss = part_scores(Bt, profile), part_scores(St, profile)
        for share in (0.0, 0.3, 0.5, 0.75, 1.0):
            for c in (0.5, 1, 2, 4, 8, 16, 64, 1e4):
                acc = RankingAccumulator(n_items, ks=(10,), auc=False)
                for k, (us, _) in enumerate(chunks):
                    mix = (1.0 - share) * set_scale * sb[k] + share * seq_scale * ss[k]
                    acc.add(c * spread_t * mix + towers[k], valid_rel[us], train_hist[us])
                score = acc.result()["ndcg@10"]
                if best is None or score > best[0]:
                    best = (score, name, profile, share, c)
    score, name, profile, share, c = best
    if score <= base["valid_ndcg@10"]:
        net.B = b_before
        return None
    result = {
        "weight": c * spread_t,
        "decay": None,
        "profile": [float(v) for v in profile],
        "low_rating_weight": base["low_rating_weight"],
        "valid_ndcg@10": score,
        "towers_only_valid_ndcg@10": base.get("towers_only_valid_ndcg@10"),
        "set_block_valid_ndcg@10": base["valid_ndcg@10"],
        "sequential": {"share": share, "set_scale": set_scale, "seq_scale": seq_scale, "profile_name": name},
    }
    net.B = torch.as_tensor(mixed_block(np.asarray(B), S, result["sequential"]), dtype=torch.float32)
    apply_blend(net, result)
    return result


def choose_concise(split, T: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """The concise block's strength (:data:`lucidrec.models.concise.GRID`), chosen on validation NDCG@10
    of the block alone, and that block as fit on train (cold items imputed from ``T`` when given): the
    blend uses it as it is, so the winner is not fit a second time."""
    from lucidrec.evaluate import fit_and_evaluate
    from lucidrec.models.concise import GRID, ConciseItemItem

    best = None
    for strength in GRID:
        scorer, metrics, _ = fit_and_evaluate(ConciseItemItem, {"strength": strength}, split, "valid", ks=(10,))
        if best is None or metrics["ndcg@10"] > best[0]:
            best = (metrics["ndcg@10"], strength, scorer.b)
    _, strength, B = best
    if T is not None:
        B = impute_cold_item_item(B, T, seen_items(split.train, split.dataset.n_items))
    return {"kind": "concise", "reg": None, "neighbors": None, "strength": strength}, B


def prefer_concise(net, ease_info, B_ease, ease_blend, concise_info, B_concise, blend, tolerance: float):
    """(info, block, blend result) of the block the model keeps: the concise one when its blend's
    validation NDCG@10 is within ``tolerance`` (relative) of dense EASE's - it makes reasons decisive at
    that small price - else EASE. ``blend()`` blends the block currently in ``net`` and sets its weights."""
    import torch

    net.B = torch.as_tensor(B_concise, dtype=torch.float32)
    concise_blend = blend()
    ok = concise_blend["valid_ndcg@10"] >= (1.0 - tolerance) * ease_blend["valid_ndcg@10"]
    compared = {"dense_ease_valid_ndcg@10": ease_blend["valid_ndcg@10"], "dense_ease_reg": ease_info.get("reg")}
    if ok:
        return {**concise_info, **compared}, B_concise, concise_blend
    net.B = torch.as_tensor(B_ease, dtype=torch.float32)
    apply_blend(net, ease_blend)  # EASE's block and weights back, as its blend chose them
    return {**ease_info, "concise_valid_ndcg@10": concise_blend["valid_ndcg@10"]}, B_ease, ease_blend


def rating_aware_block_info(dataset, train, valid, cfg) -> dict:
    """The rating-aware block's reg and neighbour count N, chosen on validation (dense catalogues only)."""
    from lucidrec.errors import ConfigError
    from lucidrec.models import item_item as ii
    from lucidrec.models.rating_aware import choose_rating_aware_block

    kind = ii.resolve_kind(cfg.item_item_kind, dataset.n_items)
    if kind != "dense":
        why = (
            "item_item_kind='concise' asks for another block"
            if kind == "concise"
            else f"this catalogue ({dataset.n_items} items) takes the sparse one"
        )
        raise ConfigError(
            f"rating_aware: the rating-aware item-item block is dense, and {why}. "
            "Fix: rating_aware=False (the default), or item_item_kind='dense' if it fits."
        )
    reg, n, choice = choose_rating_aware_block(dataset, train, valid, cfg)
    return {"kind": "rating_aware", "reg": float(reg), "neighbors": int(n), "margin": cfg.dislike_margin,
            "slope": cfg.rating_slope, "choice": choice}  # fmt: skip


def item_item_block(dataset, frame, T: np.ndarray, info: dict):
    """The block fit on ``frame`` with the chosen kind/reg/N, cold items given borrowed rows and columns:
    a dense float32 array, or a float32 CSR matrix for the sparse kind."""
    from lucidrec.baselines import ease_weights
    from lucidrec.models.item_item import impute_cold_sparse, sparse_item_item

    seen = seen_items(frame, dataset.n_items)
    if info.get("sequential"):  # the set block with the transition block mixed in (blend_sequential)
        from lucidrec.models.sequential import transition_block

        seq = info["sequential"]
        B = item_item_block(dataset, frame, T, {k: v for k, v in info.items() if k != "sequential"})
        if not seq["share"]:  # the set block alone, at the scale its recency profile was chosen for
            return mixed_block(B, np.zeros_like(B), seq)
        S = transition_block(frame, dataset.n_users, dataset.n_items, seq["decay"], seq["reg"])
        return mixed_block(B, impute_cold_item_item(S, T, seen), seq)
    if info["kind"] == "concise":
        from lucidrec.models.concise import concise_item_item

        return impute_cold_item_item(concise_item_item(dataset.matrix(frame), info["strength"]), T, seen)
    if info["kind"] == "rating_aware":
        from lucidrec.models.rating_aware import liked_and_all, prune_item_item, rating_aware_ease

        X, Y = liked_and_all(dataset, frame, info["margin"], info["slope"])
        # Pruned last, so cold items' borrowed columns keep the N-neighbour promise too.
        return prune_item_item(impute_cold_item_item(rating_aware_ease(X, Y, info["reg"]), T, seen), info["neighbors"])
    if info["kind"] == "dense":
        return impute_cold_item_item(ease_weights(dataset.matrix(frame), info["reg"]).astype(np.float32), T, seen)
    B = sparse_item_item(dataset.matrix(frame), info["reg"], info["neighbors"])
    return impute_cold_sparse(B, T, seen, info["neighbors"])


def block_weights(weight: float, decay: float, low: float) -> tuple[np.ndarray, np.ndarray]:
    """The item-item block's history weights for a blend: (rho per rating bin: ``low`` for 1-2 stars,
    else 1; pi per position bucket: ``weight * decay**bucket``)."""
    from lucidrec.models.features import LOW_RATING_BINS, N_POSITION_BUCKETS, N_RATING_BINS

    rho = np.ones(N_RATING_BINS, np.float32)
    rho[list(LOW_RATING_BINS)] = low
    return rho, (weight * decay ** np.arange(N_POSITION_BUCKETS, dtype=np.float64)).astype(np.float32)


def apply_blend(net, blend: dict) -> None:
    """Switch the block in ``net`` on with the weights a :func:`blend_on_validation` (or
    :func:`blend_sequential`: a recency ``profile`` per position bucket) result chose."""
    if blend.get("profile") is not None:
        rho = block_weights(1.0, 1.0, blend["low_rating_weight"])[0]
        net.set_item_item_weights(rho, (blend["weight"] * np.asarray(blend["profile"])).astype(np.float32))
        return
    net.set_item_item_weights(*block_weights(blend["weight"], blend["decay"], blend["low_rating_weight"]))


def blend_on_validation(net, chunks, valid_rel, train_hist, n_items: int) -> dict:
    """Blend the trained towers with the closed-form item-item block: score = c * item_item + towers,
    with the block's recency decay, weight c and the weight of 1-2 star ratings in the block (1 or 0.5)
    chosen on validation NDCG@10 (c = 0 keeps the towers alone). The towers are trained without the
    block, so they learn a signal of their own and the blend is an honest two-model ensemble rather than
    a correction fit to the block's own errors."""
    import torch

    from lucidrec.metrics import RankingAccumulator
    from lucidrec.models.features import LOW_RATING_BINS

    net.use_B = False  # the towers alone (a previous blend may have switched a block on)
    with torch.no_grad():
        towers = [net(*batch).numpy() for _, batch in chunks]
    cache: dict = {}

    def block_scores(decay: float, low: float, k: int) -> np.ndarray:
        """The block's scores for validation chunk ``k`` (unit weight), computed once per setting."""
        if (decay, low, k) not in cache:
            hist, rb, pb, mask, liked = chunks[k][1]
            with torch.no_grad():
                rho = block_weights(1.0, 1.0, low)[0]
                cache[(decay, low, k)] = net.item_item_scores(hist, pb, mask, decay, liked, rb, rho).numpy()
        return cache[(decay, low, k)]

    def ndcg(c: float, decay: float, low: float) -> float:
        acc = RankingAccumulator(n_items, ks=(10,), auc=False)
        for k, (us, _) in enumerate(chunks):
            acc.add(c * block_scores(decay, low, k) + towers[k], valid_rel[us], train_hist[us])
        return acc.result()["ndcg@10"]

    # Scale c relative to the spread of each part so the grid means the same on any dataset.
    spread_t = float(np.median([np.std(t, axis=1).mean() for t in towers])) or 1.0
    spread_e = float(np.std(block_scores(1.0, 1.0, 0), axis=1).mean()) or 1.0
    unit = spread_t / spread_e
    grid = []
    towers_flat = all(float(np.ptp(t, axis=1).max()) < 1e-9 for t in towers)
    # 1-2 star ratings may count half in the block, when validation says so: on ML-100K that is about as
    # accurate and leaves less of a score to films the user disliked (reasons never cite them).
    rated_low = any(
        bool(torch.isin(rb[mask], torch.tensor(LOW_RATING_BINS)).any()) for _, (_h, rb, _p, mask, _l) in chunks
    )
    for low in (1.0, 0.5) if rated_low else (1.0,):
        for decay in (1.0, 0.9, 0.75, 0.5):
            for c in ((0.0,) if not towers_flat else ()) + (0.5, 1, 2, 4, 8, 16, 64, 1e4):
                if c == 0.0 and (decay != 1.0 or low != 1.0):
                    continue
                grid.append((ndcg(c * unit, decay, low), c * unit, decay, low))
    best = max(grid, key=lambda g: g[0])
    _, c, decay, low = best
    towers_only = next((g[0] for g in grid if g[1] == 0.0), None)
    item_item_only = max(g[0] for g in grid if g[1] >= 1e4 * unit * 0.999)
    result = {
        "weight": c,
        "decay": decay,
        "low_rating_weight": low,
        "valid_ndcg@10": best[0],
        "towers_only_valid_ndcg@10": towers_only,
        "item_item_only_valid_ndcg@10": item_item_only,
    }
    apply_blend(net, result)
    return result


def calibrate_query(model: TrainedModel, T: np.ndarray) -> None:
    """Scale the query terms so a query moves scores about as much as a typical user's history does:
    the spread (p99 - p50) of history scores over the catalog, against that of query similarity."""
    rng = np.random.default_rng(model.config.seed)
    users = model.known.user_ids()
    if not users:
        return
    sample = rng.choice(users, size=min(100, len(users)), replace=False)
    spreads = []
    for uid in sample:
        history = model.known.history(uid)
        s = model.scorer.score(user_state(model.scorer, history, None, model.catalogue.implicit_event))
        spreads.append(np.percentile(s, 99) - np.percentile(s, 50))
    probes = T[rng.choice(len(T), size=min(100, len(T)), replace=False)]
    sims = probes @ T.T
    sim_spread = float(np.median(np.percentile(sims, 99, axis=1) - np.percentile(sims, 50, axis=1)))
    latent = probes @ model.scorer.w["Wa"] @ model.scorer.w["F"].T
    lat_spread = float(np.median(np.percentile(latent, 99, axis=1) - np.percentile(latent, 50, axis=1)))
    target = float(np.median(spreads)) * model.config.query_strength
    # Half of the query's pull comes from raw text similarity (readable), half from the learned tower.
    model.scorer.w["query_text"] = np.array([0.5 * target / max(sim_spread, 1e-6)], np.float32)
    model.scorer.w["query_latent"] = np.array([0.5 * target / max(lat_spread, 1e-6)], np.float32)


def seen_items(frame, n_items: int) -> np.ndarray:
    seen = np.zeros(n_items, bool)
    seen[np.unique(frame["iidx"].to_numpy())] = True
    return seen


def impute_cold_item_item(B: np.ndarray, text: np.ndarray, seen: np.ndarray, k: int = 10) -> np.ndarray:
    """Give items without interactions an item-item row and column borrowed from their ``k`` nearest
    warm items by text (weights = cosine similarity, normalised to sum to one). The closed form leaves
    them at zero, which would rank a new item below every warm one whatever its text says; borrowed
    columns keep the score linear in the history, so explanations stay exact."""
    cold = np.flatnonzero(~seen)
    warm = np.flatnonzero(seen)
    if len(cold) == 0 or len(warm) == 0:
        return B
    k = min(k, len(warm))
    sims = text[cold] @ text[warm].T
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sims, nn, axis=1), 0.0, None)
    w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-12, None)
    B = B.copy()
    for row, i in enumerate(cold):
        nbrs = warm[nn[row]]
        B[:, i] = w[row] @ B[:, nbrs].T
        B[i, :] = w[row] @ B[nbrs, :]
        B[i, i] = 0.0
    return B


def holdout(inter: pd.DataFrame, seed: int, fraction: float = 0.05):
    """A random ``fraction`` of each user's rows (users with 5+ rows) held out for early stopping; at least
    one row when any user has 5+ (on small data the fraction alone often picks none)."""
    rng = np.random.default_rng(seed)
    mask = rng.random(len(inter)) < fraction
    counts = inter.groupby("uidx")["uidx"].transform("size").to_numpy()
    mask &= counts >= 5
    if not mask.any() and (counts >= 5).any():
        mask[rng.choice(np.flatnonzero(counts >= 5))] = True
    return inter[~mask].reset_index(drop=True), inter[mask].reset_index(drop=True)


def require_training_data(dataset: Dataset, train: pd.DataFrame, valid: pd.DataFrame) -> None:
    """Training needs rows to learn from and validation rows to stop early and blend on: a clear error
    before the (slow) text encoding, not a missing metric deep inside it."""
    from lucidrec.errors import DataError

    sizes = f"{dataset.n_users} users, {dataset.n_items} items, {len(dataset.interactions)} interactions"
    if len(train) == 0:
        raise DataError(f"nothing to train on: the training part is empty ({sizes}). Fix: use more data.")
    if len(valid) == 0:
        raise DataError(
            f"too little data to train on ({sizes}): no interactions are left for validation, which training "
            "needs for early stopping. Fix: use more data (users with several interactions each: the 'loo' "
            "split holds out one of each user's with 3+, 'ratio' 10% of each user's), or pass a validation "
            "part (Recommender.fit(dataset, train, valid))."
        )
    if dataset.n_items < 2:
        raise DataError(f"the catalog has {dataset.n_items} item ({sizes}): nothing to rank. Fix: use more items.")


__all__ = [
    "blend_on_validation",
    "calibrate_query",
    "choose_item_item",
    "fit",
    "holdout",
    "impute_cold_item_item",
    "item_item_block",
    "rating_aware_block_info",
    "require_training_data",
]
