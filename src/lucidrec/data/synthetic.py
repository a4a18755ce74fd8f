"""Synthetic catalogs for scale tests: item text, power-law interactions and structured item vectors.

Real catalogs are not uniform: a few items take most interactions, and item vectors sit in clusters of
low intrinsic dimension. Uniform random vectors are the worst case for an ANN index and measure nothing
useful, so this generator keeps both kinds of structure:

- **Items** come from a fixed taxonomy (category -> product kind), with a brand, adjectives, a material
  and a use case, so the text of two items of one kind reads alike. Items are generated in blocks of
  ``BLOCK`` items, each block from its own seed, so the first n items of a larger catalog are exactly the
  items of a smaller one (the encoder cache is shared across sizes).
- **Interactions**: item popularity follows Zipf's law over a seeded random order of the items; each user
  has a favourite category and kind and draws most items from them, popularity-weighted.
- **Item vectors** (:func:`item_vectors`): the real text encoder encodes the first ``n_encode`` item texts
  (cached on disk); the rest are drawn from a mixture of probabilistic-PCA Gaussians fitted to those
  vectors, one component per (category, kind), so an extended item's vector sits where items with its text
  attributes sit.

Everything is reproducible from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lucidrec.errors import ConfigError

if TYPE_CHECKING:
    from lucidrec.data.dataset import Dataset

#: Items are generated in blocks of this size, each from its own seed (prefix-consistent catalogs).
BLOCK = 10_000

# category -> product kinds (the "subcategory"); uses describe what the category is for.
TAXONOMY: dict[str, list[str]] = {
    "Kitchen": ["kettle", "espresso machine", "chef knife", "frying pan", "blender", "toaster", "cutting board"],
    "Garden": ["hose", "pruning shears", "lawn mower", "planter", "garden gloves", "sprinkler", "compost bin"],
    "Outdoor": ["tent", "sleeping bag", "hiking backpack", "camping stove", "headlamp", "trekking poles"],
    "Fitness": ["yoga mat", "dumbbell set", "resistance band", "foam roller", "jump rope", "kettlebell"],
    "Audio": ["headphones", "bluetooth speaker", "soundbar", "turntable", "microphone", "earbuds"],
    "Computing": ["laptop stand", "mechanical keyboard", "wireless mouse", "usb hub", "monitor", "webcam"],
    "Photography": ["camera lens", "tripod", "camera bag", "flash unit", "memory card", "light stand"],
    "Books": ["mystery novel", "cookbook", "history book", "science fiction novel", "poetry collection", "atlas"],
    "Toys": ["building blocks", "puzzle", "plush bear", "model train", "board game", "kite"],
    "Baby": ["stroller", "baby monitor", "high chair", "diaper bag", "crib mattress", "teething ring"],
    "Beauty": ["face serum", "hair dryer", "lipstick", "perfume", "nail polish", "moisturizer"],
    "Fashion": ["leather jacket", "sneakers", "wool scarf", "denim jeans", "wristwatch", "sunglasses"],
    "Home": ["table lamp", "throw pillow", "wall clock", "area rug", "curtains", "picture frame"],
    "Tools": ["cordless drill", "hammer", "screwdriver set", "tape measure", "workbench", "socket wrench"],
    "Automotive": ["car charger", "dash camera", "tire inflator", "seat cover", "jump starter", "car wax"],
    "Pets": ["dog leash", "cat tree", "pet bed", "aquarium filter", "bird feeder", "chew toy"],
    "Music": ["acoustic guitar", "digital piano", "drum pad", "violin", "ukulele", "guitar strings"],
    "Office": ["desk organizer", "fountain pen", "notebook", "office chair", "paper shredder", "stapler"],
    "Grocery": ["green tea", "coffee beans", "olive oil", "dark chocolate", "pasta", "honey"],
    "Health": ["blood pressure monitor", "thermometer", "first aid kit", "vitamin supplement", "heating pad"],
    "Gaming": ["game controller", "gaming headset", "racing wheel", "console stand", "gaming chair"],
    "Travel": ["carry-on suitcase", "travel pillow", "packing cubes", "passport wallet", "luggage scale"],
    "Art": ["watercolor set", "sketchbook", "easel", "acrylic paints", "calligraphy pens", "canvas panels"],
    "Bedding": ["duvet", "memory foam pillow", "bed sheets", "weighted blanket", "mattress topper"],
}
USES: dict[str, list[str]] = {
    "Kitchen": ["everyday cooking", "weekend baking", "quick breakfasts", "dinner parties"],
    "Garden": ["backyard gardening", "balcony plants", "vegetable beds", "lawn care"],
    "Outdoor": ["weekend camping", "long hikes", "mountain trips", "festival season"],
    "Fitness": ["home workouts", "strength training", "stretching routines", "cardio sessions"],
    "Audio": ["music lovers", "home cinema", "podcast listening", "commuting"],
    "Computing": ["home office", "programming", "video calls", "gaming setups"],
    "Photography": ["travel photography", "portrait sessions", "studio work", "wildlife shots"],
    "Books": ["quiet evenings", "book clubs", "long flights", "curious readers"],
    "Toys": ["creative play", "family game night", "young builders", "rainy afternoons"],
    "Baby": ["new parents", "newborn care", "toddlers", "nursery setup"],
    "Beauty": ["daily skincare", "evening looks", "sensitive skin", "salon results at home"],
    "Fashion": ["city walks", "winter days", "office wear", "casual weekends"],
    "Home": ["cosy living rooms", "bedroom makeovers", "modern apartments", "housewarming gifts"],
    "Tools": ["home repairs", "woodworking", "DIY projects", "professional builders"],
    "Automotive": ["road trips", "daily driving", "car care", "winter emergencies"],
    "Pets": ["playful dogs", "indoor cats", "small pets", "pet owners"],
    "Music": ["beginner musicians", "stage performance", "home practice", "songwriting"],
    "Office": ["focused work", "students", "meeting notes", "tidy desks"],
    "Grocery": ["healthy snacking", "gourmet cooking", "morning routines", "gift baskets"],
    "Health": ["home health checks", "recovery", "daily wellness", "family care"],
    "Gaming": ["competitive play", "long sessions", "console gamers", "racing fans"],
    "Travel": ["business trips", "backpacking", "family holidays", "weekend getaways"],
    "Art": ["beginner painters", "urban sketching", "art classes", "hobby crafting"],
    "Bedding": ["restful sleep", "cold nights", "guest rooms", "hot sleepers"],
}
ADJECTIVES = (
    "compact",
    "premium",
    "lightweight",
    "durable",
    "classic",
    "portable",
    "ergonomic",
    "eco-friendly",
    "professional",
    "vintage",
    "smart",
    "heavy-duty",
    "minimalist",
    "deluxe",
    "foldable",
    "handmade",
)
MATERIALS = ("stainless steel", "bamboo", "recycled plastic", "oak wood", "aluminium", "cotton", "leather", "glass")
COLOURS = ("black", "white", "red", "navy", "olive", "grey", "sand", "teal", "copper")
_SYLLABLES = ("nor", "vik", "ala", "ter", "zen", "qua", "lum", "or", "bri", "sto", "kai", "ven", "mar", "tek", "ro")

CATEGORIES = tuple(TAXONOMY)
#: (category, kind) pairs: the groups item text and item vectors cluster around.
GROUPS = tuple((c, k) for c in CATEGORIES for k in TAXONOMY[c])


@dataclass
class SyntheticCatalog:
    """A generated catalog: ``items`` (item, title, category, year, description), ``interactions``
    (user, item, rating, timestamp), the (category, kind) ``group`` of each item and its ``popularity``
    (the Zipf sampling weight, summing to one)."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    group: np.ndarray
    popularity: np.ndarray
    seed: int

    @property
    def n_items(self) -> int:
        return len(self.items)

    def dataset(self, name: str | None = None) -> Dataset:
        from lucidrec.data.loaders import from_dataframes

        return from_dataframes(self.interactions, self.items, name=name or f"synthetic-{self.n_items}")

    def texts(self) -> list[str]:
        """The item texts exactly as :class:`lucidrec.data.text.ItemTextBuilder` writes them for
        :meth:`dataset` ("Title (year). Category: Kitchen, kettle. Description."), so the encoder cache is
        shared with training."""
        titles = self.items["title"].to_numpy()
        years = self.items["year"].to_numpy()
        cats = self.items["category"].to_numpy()
        desc = self.items["description"].to_numpy()
        return [f"{t} ({int(y)}). Category: {', '.join(c)}. {d}"[:512] for t, y, c, d in zip(titles, years, cats, desc)]


def _brands(rng: np.random.Generator, n: int = 400) -> list[str]:
    names = set()
    while len(names) < n:
        k = int(rng.integers(2, 4))
        names.add("".join(rng.choice(_SYLLABLES, size=k)).capitalize())
    return sorted(names)


def _block(seed: int, block: int) -> dict[str, np.ndarray]:
    """One block of BLOCK items, from its own seed: text attributes and an 'appeal' that orders popularity."""
    rng = np.random.default_rng([seed, block])
    brand_rng = np.random.default_rng([seed, 10**6])  # brands are shared by every block
    brands = np.asarray(_brands(brand_rng))
    # Each brand makes products of one or two categories (so brand names carry category signal).
    brand_cats = brand_rng.integers(0, len(CATEGORIES), size=(len(brands), 2))
    brand_cats[: len(CATEGORIES), 0] = np.arange(len(CATEGORIES))  # every category has at least one brand
    # Category sizes are skewed too: some departments are much larger than others.
    cat_weight = brand_rng.dirichlet(np.full(len(CATEGORIES), 2.0))
    cat = rng.choice(len(CATEGORIES), size=BLOCK, p=cat_weight)
    n_kinds = np.array([len(TAXONOMY[c]) for c in CATEGORIES])
    kind = np.floor(rng.random(BLOCK) * n_kinds[cat]).astype(np.int64)
    # A brand that makes this category, chosen per item (every category has at least one).
    by_cat = [np.flatnonzero((brand_cats == c).any(axis=1)) for c in range(len(CATEGORIES))]
    n_brands = np.array([len(b) for b in by_cat])
    pick = np.floor(rng.random(BLOCK) * n_brands[cat]).astype(np.int64)
    brand = np.array([by_cat[c][k] for c, k in zip(cat, pick)])
    return {
        "cat": cat,
        "kind": kind,
        "brand": brands[brand],
        "adj": rng.integers(len(ADJECTIVES), size=(BLOCK, 2)),
        "material": rng.integers(len(MATERIALS), size=BLOCK),
        "colour": rng.integers(len(COLOURS), size=BLOCK),
        "use": rng.integers(4, size=BLOCK),
        "model": rng.integers(100, 1000, size=BLOCK),
        "year": rng.integers(1995, 2026, size=BLOCK),
        "appeal": rng.random(BLOCK),
    }


def make_items(n_items: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The item table, each item's group index (into :data:`GROUPS`) and its appeal (popularity order)."""
    if not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ConfigError(f"n_items={n_items!r}: must be a positive integer. Fix: e.g. n_items=10_000.")
    n_blocks = -(-int(n_items) // BLOCK)
    parts = [_block(seed, b) for b in range(n_blocks)]
    a = {k: np.concatenate([p[k] for p in parts])[:n_items] for k in parts[0]}
    group_index = {g: i for i, g in enumerate(GROUPS)}
    titles, cats, desc, groups = [], [], [], np.empty(n_items, np.int64)
    for i in range(n_items):
        c = CATEGORIES[a["cat"][i]]
        kind = TAXONOMY[c][a["kind"][i]]
        adj1, adj2 = ADJECTIVES[a["adj"][i, 0]], ADJECTIVES[a["adj"][i, 1]]
        titles.append(f"{a['brand'][i]} {adj1.capitalize()} {kind.title()} {a['model'][i]}")
        cats.append([c, kind])
        desc.append(
            f"A {adj2} {COLOURS[a['colour'][i]]} {kind} in {MATERIALS[a['material'][i]]} for {USES[c][a['use'][i]]}."
        )
        groups[i] = group_index[(c, kind)]
    items = pd.DataFrame(
        {
            "item": np.arange(n_items).astype(str),
            "title": titles,
            "category": cats,
            "year": a["year"].astype(np.int64),
            "description": desc,
        }
    )
    return items, groups, a["appeal"]


def zipf_popularity(appeal: np.ndarray, exponent: float = 1.0) -> np.ndarray:
    """Zipf weights 1 / rank^exponent, ranks ordered by ``appeal`` (highest appeal = rank 1)."""
    rank = np.empty(len(appeal), np.int64)
    rank[np.argsort(-appeal, kind="stable")] = np.arange(1, len(appeal) + 1)
    w = 1.0 / rank.astype(np.float64) ** exponent
    return w / w.sum()


def make_catalog(
    n_items: int,
    n_users: int | None = None,
    seed: int = 0,
    mean_history: float = 20.0,
    zipf_exponent: float = 1.0,
    focus: float = 0.8,
) -> SyntheticCatalog:
    """A catalog of ``n_items`` items and ``n_users`` users (default ``max(500, n_items // 10)``).

    Each user has a favourite category and kind; each interaction comes from the favourite kind with
    probability ``focus / 2``, from elsewhere in the favourite category with ``focus / 2``, else from the
    whole catalog, always popularity-weighted (Zipf, ``zipf_exponent``). History lengths are heavy-tailed
    (log-normal, at least 3). Ratings 1-5 are higher inside the user's favourite category."""
    if n_users is None:
        n_users = max(500, int(n_items) // 10)
    if not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ConfigError(f"n_users={n_users!r}: must be a positive integer. Fix: e.g. n_users=1000.")
    if not 0.0 <= focus <= 1.0:
        raise ConfigError(f"focus={focus!r}: must be in [0, 1]. Fix: e.g. focus=0.8.")
    if mean_history < 3:
        raise ConfigError(f"mean_history={mean_history!r}: must be at least 3. Fix: e.g. mean_history=20.")
    items, group, appeal = make_items(n_items, seed)
    pop = zipf_popularity(appeal, zipf_exponent)
    rng = np.random.default_rng([seed, 2])
    cat_of_item = np.array([CATEGORIES.index(GROUPS[g][0]) for g in range(len(GROUPS))])[group]

    # Per-user favourite group, drawn by the popularity mass of each group (busy groups attract more users).
    group_mass = np.bincount(group, weights=pop, minlength=len(GROUPS))
    fav_group = rng.choice(len(GROUPS), size=n_users, p=group_mass / group_mass.sum())
    fav_cat = np.array([CATEGORIES.index(GROUPS[g][0]) for g in range(len(GROUPS))])[fav_group]
    lengths = 3 + np.floor(rng.lognormal(np.log(max(mean_history - 3, 1.0)) - 0.5, 1.0, size=n_users))
    lengths = np.minimum(lengths, min(500, n_items)).astype(np.int64)
    # Draw twice as many as needed (plus a few) and keep each user's first ``length`` distinct items:
    # popular items repeat, and dropping repeats must not leave a history shorter than asked for.
    users = np.repeat(np.arange(n_users), 2 * lengths + 5)
    lengths = np.minimum(lengths, n_items)
    source = rng.random(len(users))
    # 0 = favourite kind, 1 = favourite category, 2 = anywhere
    where = np.where(source < focus / 2, 0, np.where(source < focus, 1, 2))
    chosen = np.empty(len(users), np.int64)
    u = rng.random(len(users))
    chosen[where == 2] = _sample_in(np.arange(n_items), pop, u[where == 2])
    for key, member_of, fav in ((0, group, fav_group), (1, cat_of_item, fav_cat)):
        sel = np.flatnonzero(where == key)
        target = fav[users[sel]]
        order = np.argsort(member_of, kind="stable")
        starts = np.searchsorted(member_of[order], np.arange(member_of.max() + 2))
        for t in np.unique(target):
            rows = sel[target == t]
            members = order[starts[t] : starts[t + 1]]
            if len(members) == 0:  # a group absent from a tiny catalog: fall back to the whole catalog
                chosen[rows] = _sample_in(np.arange(n_items), pop, u[rows])
            else:
                chosen[rows] = _sample_in(members, pop[members], u[rows])
    frame = pd.DataFrame({"u": users, "i": chosen}).drop_duplicates(["u", "i"])
    frame = frame[frame.groupby("u").cumcount().to_numpy() < lengths[frame["u"].to_numpy()]]
    # A user whose favourite kind is tiny can still come up short: top up with uniformly drawn items.
    have = np.bincount(frame["u"].to_numpy(), minlength=n_users)
    short = np.flatnonzero(have < np.minimum(3, lengths))
    if len(short):
        extra = pd.DataFrame({"u": np.repeat(short, 10), "i": rng.integers(0, n_items, size=10 * len(short))})
        frame = pd.concat([frame, extra]).drop_duplicates(["u", "i"])
        frame = frame[frame.groupby("u").cumcount().to_numpy() < lengths[frame["u"].to_numpy()]]
        frame = frame.sort_values("u", kind="stable")
    in_fav = cat_of_item[frame["i"].to_numpy()] == fav_cat[frame["u"].to_numpy()]
    ratings = np.clip(np.rint(rng.normal(np.where(in_fav, 4.2, 3.0), 0.9)), 1, 5)
    # Timestamps: each user's items in a random order over a seeded clock.
    ts = 1_600_000_000 + rng.integers(0, 3 * 10**7, size=len(frame))
    interactions = pd.DataFrame(
        {
            "user": "u" + frame["u"].astype(str).to_numpy(),
            "item": frame["i"].astype(str).to_numpy(),
            "rating": ratings.astype(np.int64),
            "timestamp": ts,
        }
    )
    return SyntheticCatalog(items, interactions.reset_index(drop=True), group, pop, seed)


def _sample_in(members: np.ndarray, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of ``members`` with probability proportional to ``weights`` (u in [0, 1))."""
    cdf = np.cumsum(weights)
    pos = np.searchsorted(cdf, u * cdf[-1], side="right")
    return members[np.minimum(pos, len(members) - 1)]


# ====================================================================== item vectors
@dataclass
class _Component:
    mean: np.ndarray  # (d,)
    basis: np.ndarray  # (q, d): principal directions scaled by their standard deviation above the noise
    noise: float  # isotropic standard deviation of the rest


class VectorMixture:
    """A mixture of probabilistic-PCA Gaussians, one component per group, with a parent level behind it.

    Each component keeps the group's mean, its top ``q`` principal directions and an isotropic noise for
    the rest: clusters with low intrinsic dimension, as language-model embeddings of similar texts have.
    A group with too few points for its own directions keeps its mean and borrows the within-group
    spread pooled over its parent (e.g. the category of a product kind); a group with no points at all
    is drawn from its parent's whole distribution (or the global one). Samples are L2-normalised like the
    encoder's outputs."""

    def __init__(self, q: int = 8):
        self.q = q
        self.components: dict[int, _Component] = {}
        self.parents: dict[int, _Component] = {}
        self.parent_of: np.ndarray | None = None
        self.fallback: _Component | None = None

    def _fit_one(self, x: np.ndarray, mean: np.ndarray | None = None) -> _Component:
        mean = x.mean(0) if mean is None else mean
        xc = x - mean
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        var = s**2 / max(len(x) - 1, 1)
        q = min(self.q, len(var) - 1) if len(var) > 1 else 0
        d = x.shape[1]
        # The rest of the variance (beyond q directions) spread over the remaining dimensions.
        noise_var = float(var[q:].sum() / max(d - q, 1)) if len(var) > q else 0.0
        scale = np.sqrt(np.clip(var[:q] - noise_var, 0.0, None))
        return _Component(mean.astype(np.float32), (scale[:, None] * vt[:q]).astype(np.float32), np.sqrt(noise_var))

    def fit(self, vectors: np.ndarray, groups: np.ndarray, parent_of: np.ndarray | None = None) -> VectorMixture:
        """``groups[i]``: item i's group; ``parent_of[g]``: group g's parent (None: one parent for all)."""
        vectors = np.asarray(vectors, np.float64)
        groups = np.asarray(groups, np.int64)
        self.parent_of = np.zeros(groups.max() + 1, np.int64) if parent_of is None else np.asarray(parent_of)
        self.fallback = self._fit_one(vectors)
        means = {int(g): vectors[groups == g].mean(0) for g in np.unique(groups)}
        residual = vectors - np.stack([means[int(g)] for g in groups])
        within: dict[int, _Component] = {}
        item_parent = self.parent_of[groups]
        for p in np.unique(item_parent):
            rows = item_parent == p
            if rows.sum() >= 2:
                self.parents[int(p)] = self._fit_one(vectors[rows])
                within[int(p)] = self._fit_one(residual[rows], mean=np.zeros(vectors.shape[1]))
        pooled = self._fit_one(residual, mean=np.zeros(vectors.shape[1]))
        for g, mean in means.items():
            x = vectors[groups == g]
            if len(x) >= 2 * self.q:
                self.components[g] = self._fit_one(x)
            else:  # too few points for a stable basis: the group's mean, its parent's within-group spread
                w = within.get(int(self.parent_of[g]), pooled)
                self.components[g] = _Component(mean.astype(np.float32), w.basis, w.noise)
        return self

    def _component(self, g: int) -> _Component:
        if g in self.components:
            return self.components[g]
        p = int(self.parent_of[g]) if self.parent_of is not None and g < len(self.parent_of) else -1
        return self.parents.get(p, self.fallback)

    def sample(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.fallback is None:
            raise ConfigError("VectorMixture.sample before fit. Fix: call fit(vectors, groups) first.")
        d = self.fallback.mean.shape[0]
        out = np.empty((len(groups), d), np.float32)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            c = self._component(int(g))
            z = rng.standard_normal((len(rows), c.basis.shape[0])).astype(np.float32)
            eps = rng.standard_normal((len(rows), d)).astype(np.float32) * np.float32(c.noise)
            out[rows] = c.mean + z @ c.basis + eps
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def item_vectors(
    catalog: SyntheticCatalog,
    n_encode: int = 20_000,
    encoder=None,
    cache_dir: str | None = None,
    chunk: int = 2_000,
    progress: bool = True,
) -> np.ndarray:
    """Unit-norm text vectors for every item: the first ``n_encode`` items encoded by ``encoder`` (default:
    the packaged all-MiniLM-L6-v2, cached on disk under ``cache_dir`` / ``LUCIDREC_CACHE`` /
    ``~/.cache/lucidrec``), the rest sampled from a :class:`VectorMixture` fitted to them."""
    from tqdm.auto import tqdm

    from lucidrec.encoders import CachedEncoder

    n = catalog.n_items
    n_enc = min(int(n_encode), n)
    if n_enc < 1:
        raise ConfigError(f"n_encode={n_encode!r}: must be at least 1. Fix: e.g. n_encode=20000.")
    if encoder is None:
        from lucidrec.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder()
    cached = CachedEncoder(encoder, cache_dir)
    texts = catalog.texts()[:n_enc]
    # Encode in chunks through the cache: a killed run keeps what it finished.
    parts = []
    for s in tqdm(range(0, n_enc, chunk), desc="encoding item texts", disable=not progress, unit="chunk"):
        parts.append(cached.encode(texts[s : s + chunk]))
    encoded = np.concatenate(parts)
    if n_enc == n:
        return encoded
    out = np.empty((n, encoded.shape[1]), np.float32)
    out[:n_enc] = encoded
    category_of_group = np.array([CATEGORIES.index(c) for c, _ in GROUPS])
    mix = VectorMixture().fit(encoded, catalog.group[:n_enc], category_of_group)
    rng = np.random.default_rng([catalog.seed, 3])
    for s in tqdm(range(n_enc, n, 100_000), desc="sampling item vectors", disable=not progress, unit="chunk"):
        e = min(s + 100_000, n)
        out[s:e] = mix.sample(catalog.group[s:e], rng)
    return out


__all__ = [
    "CATEGORIES",
    "GROUPS",
    "SyntheticCatalog",
    "VectorMixture",
    "item_vectors",
    "make_catalog",
    "make_items",
    "zipf_popularity",
]
