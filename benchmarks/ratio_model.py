"""The ML-100K model the benchmarks share: trained on the `ratio` split (train + valid) once, saved to a
folder (the same one `make demo` writes), and loaded from there on later runs."""

from __future__ import annotations

from pathlib import Path


def ratio_model(folder: Path, load_encoder: bool = True):
    """(dataset, ratio split, Recommender loaded from ``folder``), training it first if the folder is empty."""
    from lucidrec.data import load_dataset
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender
    from lucidrec.splits import split

    ds = load_dataset("ml-100k")
    s = split(ds, "ratio")
    if not (Path(folder) / "config.json").exists():
        Recommender(HybridConfig(mode="set")).fit(ds, s.train, s.valid, progress=False).save(folder)
    return ds, s, Recommender.load(folder, load_encoder=load_encoder)
