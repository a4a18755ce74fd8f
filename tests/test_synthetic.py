"""Synthetic scale data: reproducible by seed, prefix-consistent, power-law skew, structured item vectors."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from lucidrec.data.synthetic import VectorMixture, item_vectors, make_catalog, make_items
from lucidrec.data.text import ItemTextBuilder
from lucidrec.errors import ConfigError


class WordHashEncoder:
    """A deterministic stand-in for the language model: each word has a fixed random vector, a text is
    the normalised sum of its words' vectors (texts sharing words are similar, like real embeddings)."""

    name = "word-hash"
    key = "word-hash-v1"
    dim = 32

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(",", " ").split():
                out[i] += np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_same_seed_same_catalog_other_seed_differs():
    a, b, c = make_catalog(3000, seed=5), make_catalog(3000, seed=5), make_catalog(3000, seed=6)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert not a.items["title"].equals(c.items["title"])
    assert not a.interactions.equals(c.interactions)


def test_a_larger_catalog_starts_with_the_smaller_one():
    small, _, _ = make_items(4000, seed=1)
    large, _, _ = make_items(23_000, seed=1)  # spans three generation blocks
    pd.testing.assert_frame_equal(small, large.iloc[:4000])


def test_popularity_is_power_law_skewed():
    cat = make_catalog(20_000, n_users=4000, seed=0)
    counts = np.sort(np.bincount(cat.interactions["item"].astype(int), minlength=cat.n_items))[::-1]
    top1 = counts[: cat.n_items // 100].sum() / counts.sum()
    assert top1 > 0.2, f"top 1% of items hold only {top1:.0%} of interactions"
    rank = np.arange(1, len(counts) + 1)
    m = (counts > 0) & (rank >= 5) & (rank <= 2000)
    slope = np.polyfit(np.log(rank[m]), np.log(counts[m]), 1)[0]
    assert -1.4 < slope < -0.6, f"rank-frequency slope {slope:.2f} is not Zipf-like"
    # Heavy-tailed history lengths, at least 3 each.
    lengths = cat.interactions.groupby("user").size()
    assert lengths.min() >= 3 and lengths.max() > 4 * lengths.median()


def test_texts_match_the_item_text_builder_and_dataset_loads():
    cat = make_catalog(500, seed=2)
    ds = cat.dataset()
    assert ds.n_items == 500
    assert cat.texts() == ItemTextBuilder().build(ds)
    assert ds.schema.categorical == ["category"]


def test_bad_sizes_raise_config_errors():
    with pytest.raises(ConfigError, match="n_items"):
        make_catalog(0)
    with pytest.raises(ConfigError, match="n_users"):
        make_catalog(100, n_users=0)
    with pytest.raises(ConfigError, match="focus"):
        make_catalog(100, focus=1.5)


def test_mixture_samples_sit_in_their_groups_clusters():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 24))
    groups = rng.integers(6, size=1200)
    x = centres[groups] + 0.3 * rng.standard_normal((1200, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mix = VectorMixture(q=4).fit(x, groups)
    new_groups = rng.integers(6, size=600)
    s = mix.sample(new_groups, np.random.default_rng(1))
    assert np.allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-5)
    means = np.stack([x[groups == g].mean(0) for g in range(6)])
    nearest = np.argmax(s @ means.T, axis=1)
    assert (nearest == new_groups).mean() > 0.95
    # The spread around each centre is like the data's, not collapsed and not uniform noise.
    real = np.mean([np.linalg.norm(x[groups == g] - means[g], axis=1).mean() for g in range(6)])
    fake = np.mean([np.linalg.norm(s[new_groups == g] - means[g], axis=1).mean() for g in range(6)])
    assert 0.7 < fake / real < 1.3


def test_item_vectors_encode_a_prefix_and_extend_it(tmp_path):
    cat = make_catalog(1500, seed=3)
    enc = WordHashEncoder()
    v = item_vectors(cat, n_encode=600, encoder=enc, cache_dir=str(tmp_path), chunk=250, progress=False)
    assert v.shape == (1500, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(v[:600], enc.encode(cat.texts()[:600]), atol=1e-6)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert list((tmp_path / "embeddings" / enc.key).glob("shard-*.npz")), "encoded vectors were not cached"
    # Reproducible, and extended items resemble encoded items of their own (category, kind) group.
    again = item_vectors(cat, n_encode=600, encoder=enc, cache_dir=str(tmp_path), progress=False)
    np.testing.assert_array_equal(v, again)
    g_enc = cat.group[:600]
    present = np.unique(g_enc)
    means = np.stack([v[:600][g_enc == g].mean(0) for g in present])
    ext = np.isin(cat.group[600:], present)
    nearest = present[np.argmax(v[600:][ext] @ means.T, axis=1)]
    sampled_acc = (nearest == cat.group[600:][ext]).mean()
    # The same check on the true encodings of those items: the mixture is about as clustered as the data.
    real = enc.encode(cat.texts()[600:])[ext]
    real_acc = (present[np.argmax(real @ means.T, axis=1)] == cat.group[600:][ext]).mean()
    assert sampled_acc > 0.8 and real_acc > 0.8, (sampled_acc, real_acc)  # chance: 1 / len(GROUPS) < 0.01
    assert abs(sampled_acc - real_acc) < 0.15
