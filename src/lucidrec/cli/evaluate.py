"""CLI commands for data, evaluation and training: evaluate, export-run, split, baselines, train, demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lucidrec.cli.common import (
    DataOpt,
    ProtocolOpt,
    SeedOpt,
    console,
    friendly,
    metric_table,
    out,
    parse_params,
    progress,
    safe,
)
from lucidrec.errors import ConfigError


def _seeded(model: str, seed: int, params: dict) -> dict:
    """SASRec is trained per seed: --seed reaches it (the split's seed alone left every SASRec run the same)."""
    if model.lower() == "sasrec" and "seed" not in params:
        return {"seed": seed, **params}
    return params


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command()
    @friendly
    def evaluate(
        model: str = typer.Option(
            "ease", "--model", help="Baseline name (mostpop, itemknn, ease, als) or a trained model folder."
        ),
        data: str = DataOpt,
        protocol: str = ProtocolOpt,
        seed: int = SeedOpt,
        param: list[str] = typer.Option(None, "--param", help="Fix a hyperparameter, NAME=VALUE (skips tuning)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ):
        """Evaluate a baseline (tuned on validation, retrained on train+valid) or a trained model on the test part."""
        from lucidrec.api import evaluate_model

        result = evaluate_model(
            model,
            data=data,
            protocol=protocol,
            seed=seed,
            params=_seeded(model, seed, parse_params(param)),
            progress=None if as_json else progress,
        )
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(metric_table([result], f"{result['model']} on {result['protocol']} (test, full ranking)"))
            if result.get("params"):
                out.print(f"params: {safe(result['params'])}")

    @app.command("export-run")
    @friendly
    def export_run(
        model: str = typer.Option("ease", "--model", help="Baseline name or trained model folder."),
        out_path: Path = typer.Option(..., "--out", help="TSV file to write (user, item, score)."),
        data: str = DataOpt,
        protocol: str = ProtocolOpt,
        seed: int = SeedOpt,
        depth: int = typer.Option(100, "--depth", min=1, max=10000, help="Rows per user."),
        param: list[str] = typer.Option(None, "--param", help="Fix a hyperparameter, NAME=VALUE."),
    ):
        """Write a TSV run file for the test part: user<TAB>item<TAB>score, best first, up to --depth per user."""
        from lucidrec.api import export_model_run

        n = export_model_run(
            model,
            out_path,
            data=data,
            protocol=protocol,
            seed=seed,
            depth=depth,
            params=_seeded(model, seed, parse_params(param)),
            progress=progress,
        )
        console.print(f"wrote {n} rows to {safe(out_path)}")

    @app.command("split")
    @friendly
    def split_cmd(
        out_dir: Path = typer.Option(..., "--out", help="Folder for train.tsv, valid.tsv, test.tsv."),
        data: str = DataOpt,
        protocol: str = ProtocolOpt,
        seed: int = SeedOpt,
    ):
        """Write the split itself (user<TAB>item<TAB>rating<TAB>timestamp, the dataset's own ids)."""
        from lucidrec.data import load_dataset
        from lucidrec.splits import split

        s = split(load_dataset(data), protocol, seed)
        for p in s.write(out_dir):
            console.print(f"wrote {safe(p)}")
        tr, va, te = s.sizes()
        out.print(f"{protocol}: train {tr}, valid {va}, test {te}")

    @app.command()
    @friendly
    def baselines(
        data: str = DataOpt,
        protocol: list[str] = typer.Option(["ratio", "loo"], "--protocol"),
        seed: int = SeedOpt,
        as_json: bool = typer.Option(False, "--json"),
    ):
        """Tune and evaluate every baseline on the given protocols and print their table."""
        from lucidrec.api import run_baselines

        all_results = []
        for p in protocol:
            results = run_baselines(data=data, protocol=p, seed=seed, progress=progress)
            all_results += results
            if not as_json:
                out.print(metric_table(results, f"baselines on {p} (test part, full ranking)", ks=(10,)))
        if as_json:
            out.print_json(json.dumps(all_results))

    @app.command()
    @friendly
    def train(
        data: str = DataOpt,
        protocol: str = ProtocolOpt,
        seed: int = SeedOpt,
        out_dir: Path = typer.Option(Path("models/ml100k"), "--out", help="Model folder to write."),
        encoder: str | None = typer.Option(
            None, "--encoder", help="Sentence-transformers folder (default: all-MiniLM-L6-v2, packaged)."
        ),
        epochs: int = typer.Option(30, "--epochs", min=1, max=1000),
        dim: int = typer.Option(128, "--dim", min=4, max=1024),
        mode: str | None = typer.Option(
            None, "--mode", help="Training samples: set, seq or mixed (default: by protocol)."
        ),
        max_minutes: float = typer.Option(4.0, "--max-minutes", min=0.1),
        log_dir: str | None = typer.Option(None, "--tensorboard", help="Write TensorBoard logs here."),
        rating_aware: bool = typer.Option(
            False,
            "--rating-aware",
            help="Disliked history items (below the user's mean rating - 1) give no support in any block, so "
            "reasons never cite them; costs accuracy on ML-100K (README, 'Rating-aware').",
        ),
        item_item: str = typer.Option(
            "auto",
            "--item-item",
            help="Item-item block: auto (concise or dense EASE, whichever validation prefers, sparse above 10k "
            "items), dense, sparse or concise (README, 'Decisive evidence').",
        ),
        transformer: bool | None = typer.Option(
            None,
            "--transformer/--no-transformer",
            help="The transformer term (a SASRec-style net over the recent items, its weight chosen on "
            "validation): on by default with --protocol loo (more next-item accuracy; about a second to explain "
            "a request), off otherwise; the flag forces it either way (README, 'Next-item').",
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        forget_file: Path = typer.Option(
            None,
            "--forget-file",
            help="Users to leave out of training: one id (or tombstone digest) per line. Users forgotten in "
            "the --out folder (forgotten_users.txt) are always left out.",
        ),
    ):
        """Train the language-model recommender on the protocol's train part (early stopping on valid) and save it."""
        from lucidrec.data import load_dataset
        from lucidrec.models.config import HybridConfig
        from lucidrec.models.item_item import KINDS
        from lucidrec.recommender import Recommender
        from lucidrec.splits import split

        # Options first: a typo should not wait for the data to load.
        if mode is not None and mode not in ("set", "seq", "mixed"):
            raise ConfigError(f"--mode '{mode}': use set, seq or mixed.")
        if item_item not in KINDS:
            raise ConfigError(f"--item-item '{item_item}': use one of {', '.join(KINDS)}.")
        forgotten = _forgotten_users(out_dir, forget_file)
        ds = load_dataset(data)
        if forgotten:
            n_before = ds.n_users
            ds = ds.without_users(forgotten)
            console.print(f"[dim]left out {n_before - ds.n_users} forgotten user(s)[/]")
        s = split(ds, protocol, seed)
        cfg = HybridConfig(
            dim=dim,
            epochs=epochs,
            seed=seed,
            max_minutes=max_minutes,
            mode=mode or {"loo": "seq", "ratio": "set", "cold": "set"}.get(protocol, "mixed"),
            rating_aware=rating_aware,
            item_item_kind=item_item,
            transformer=transformer,
        )
        rec = Recommender(cfg, encoder=encoder).fit(ds, s.train, s.valid, progress=not quiet, log_dir=log_dir)
        rec.save(out_dir)
        rep = rec.train_report
        block = (rep.get("item_item") or {}).get("kind", "none")
        console.print(
            f"saved to {safe(out_dir)} (best valid NDCG@10 {rep['best_valid_ndcg@10']:.4f}, "
            f"{len(rep['epochs'])} epochs, {rep['seconds']} s, item-item block: {block})"
        )

    def _forgotten_users(out_dir: Path, forget_file: Path | None) -> set[str]:
        """Tombstones a retrain must honour: the --out folder's own (users forgotten while it served) and
        those of --forget-file. Read before the data loads, so a bad file fails fast."""
        from lucidrec import forgetting

        digests = forgetting.read(out_dir)
        if forget_file is not None:
            digests |= forgetting.read_forget_file(forget_file)
        return digests

    @app.command()
    @friendly
    def demo(
        data: str = DataOpt,
        out_dir: Path = typer.Option(Path("models/ml100k"), "--out"),
        retrain: bool = typer.Option(False, "--retrain", help="Train even if a model folder exists."),
    ):
        """The main job: baselines and the language-model recommender on ML-100K, then sample recommendations."""
        from lucidrec.api import run_baselines
        from lucidrec.cli.recommend import print_recs
        from lucidrec.data import load_dataset
        from lucidrec.models.config import HybridConfig
        from lucidrec.recommender import Recommender, evaluate_saved_model
        from lucidrec.splits import split

        ds = load_dataset(data)
        s = split(ds, "ratio")
        if retrain or not (out_dir / "config.json").exists():
            console.print("[bold]training the language-model recommender (ratio protocol)...[/]")
            Recommender(HybridConfig(mode="set")).fit(ds, s.train, s.valid).save(out_dir)
        else:
            console.print(f"[dim]reusing the trained model in {safe(out_dir)} (pass --retrain to train again)[/]")
        console.print("[bold]tuning and evaluating baselines...[/]")
        results = run_baselines(data=data, protocol="ratio", progress=None)
        results.append(evaluate_saved_model(out_dir, s).to_dict())
        out.print(metric_table(results, "ratio protocol, test part, full ranking", ks=(10,)))
        rec = Recommender.load(out_dir)
        user = str(ds.user_ids[0])
        # with counterfactuals: verified "what if" sentences, and reasons that cite decisive sets
        print_recs(rec.recommend(user=user, k=10, explain=True, counterfactual=True), True)
        print_recs(rec.recommend(query="a funny animated film for kids", k=10, explain=True), True)
