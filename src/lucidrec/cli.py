"""Command-line interface (typer): a thin shell over the Python API."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lucidrec.errors import ConfigError, LucidrecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lucidrec: recommendations that explain themselves.")
console = Console(stderr=True)
# Pipes get 80 columns by default, too narrow for metric tables.
out = Console(width=None if sys.stdout.isatty() else 150)

DataOpt = typer.Option("ml-100k", "--data", help="'ml-100k', a folder of RecBole atomic files, or a CSV/Parquet file.")
ProtocolOpt = typer.Option("ratio", "--protocol", help="Evaluation protocol: ratio, loo or cold.")
SeedOpt = typer.Option(2026, "--seed", help="Seed of the split and of training.")


def _friendly(fn):
    """Print LucidrecError messages without a traceback and exit non-zero."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LucidrecError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper


def _parse_params(params: list[str]) -> dict:
    out_params = {}
    for p in params or []:
        if "=" not in p:
            raise ConfigError(f"--param '{p}': expected NAME=VALUE, e.g. --param reg=300.")
        k, v = p.split("=", 1)
        try:
            out_params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out_params[k.strip()] = v
    return out_params


def _metric_table(results: list[dict], title: str, ks=(10, 20)) -> Table:
    """One row per (model, K): the ranking metrics, AUC and coverage."""
    table = Table(title=title)
    names = ("ndcg", "recall", "precision", "f1", "hr", "mrr", "map", "coverage")
    for c in ("model", "K", *names, "auc"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in results:
        m = r["metrics"]
        for k in ks:
            if f"ndcg@{k}" not in m:
                continue
            table.add_row(
                r["model"], str(k), *[f"{m[f'{n}@{k}']:.4f}" for n in names], f"{m['auc']:.4f}" if "auc" in m else "-"
            )
    return table


@app.command()
@_friendly
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
        params=_parse_params(param),
        progress=None if as_json else lambda m: console.print(f"[dim]{m}[/]"),
    )
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(_metric_table([result], f"{result['model']} on {result['protocol']} (test, full ranking)"))
        if result.get("params"):
            out.print(f"params: {result['params']}")


@app.command("export-run")
@_friendly
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
        params=_parse_params(param),
        progress=lambda m: console.print(f"[dim]{m}[/]"),
    )
    console.print(f"wrote {n} rows to {out_path}")


@app.command("split")
@_friendly
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
        console.print(f"wrote {p}")
    tr, va, te = s.sizes()
    out.print(f"{protocol}: train {tr}, valid {va}, test {te}")


@app.command()
@_friendly
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
        results = run_baselines(data=data, protocol=p, seed=seed, progress=lambda m: console.print(f"[dim]{m}[/]"))
        all_results += results
        if not as_json:
            out.print(_metric_table(results, f"baselines on {p} (test part, full ranking)", ks=(10,)))
    if as_json:
        out.print_json(json.dumps(all_results))


@app.command()
@_friendly
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
    mode: str | None = typer.Option(None, "--mode", help="Training samples: set, seq or mixed (default: by protocol)."),
    max_minutes: float = typer.Option(4.0, "--max-minutes", min=0.1),
    log_dir: str | None = typer.Option(None, "--tensorboard", help="Write TensorBoard logs here."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Train the language-model recommender on the protocol's train part (early stopping on valid) and save it."""
    from lucidrec.data import load_dataset
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender
    from lucidrec.splits import split

    ds = load_dataset(data)
    s = split(ds, protocol, seed)
    if mode is not None and mode not in ("set", "seq", "mixed"):
        raise ConfigError(f"--mode '{mode}': use set, seq or mixed.")
    cfg = HybridConfig(
        dim=dim,
        epochs=epochs,
        seed=seed,
        max_minutes=max_minutes,
        mode=mode or {"loo": "seq", "ratio": "set", "cold": "set"}.get(protocol, "mixed"),
    )
    rec = Recommender(cfg, encoder=encoder).fit(ds, s.train, s.valid, progress=not quiet, log_dir=log_dir)
    rec.save(out_dir)
    rep = rec.train_report
    console.print(
        f"saved to {out_dir} (best valid NDCG@10 {rep['best_valid_ndcg@10']:.4f}, "
        f"{len(rep['epochs'])} epochs, {rep['seconds']} s)"
    )


def _print_recs(result: dict, explain: bool):
    table = Table(title=_title_for(result))
    for c in ("rank", "item", "title", "score"):
        table.add_column(c, justify="right" if c in ("rank", "score") else "left")
    if explain:
        table.add_column("reason")
        table.add_column("evidence")
    for it in result["items"]:
        row = [str(it["rank"]), it["item_id"], it["title"], f"{it['score']:.3f}"]
        if explain:
            ev = ", ".join(_ev_short(e) for e in it.get("evidence", []) if "contribution" in e)
            row += [it.get("reason", ""), ev]
        table.add_row(*row)
    out.print(table)
    pq = result.get("parsed_query")
    if pq is not None:
        out.print(f"[dim]understood as: {_understood(pq)}[/]")
        for note in pq.get("notes", []):
            out.print(f"[yellow]note:[/] {note}")


def _understood(pq: dict) -> str:
    """One line saying how a query was parsed, e.g. 'genres Comedy; not Romance; years 1990-1999; text "dark"'."""
    bits = []
    if pq["genres"]:
        bits.append("genres " + (" or " if pq["genre_mode"] == "any" else " and ").join(pq["genres"]))
    if pq["exclude_genres"]:
        bits.append("not " + ", ".join(pq["exclude_genres"]))
    if pq["year"]:
        bits.append(f"years {pq['year'][0]}-{pq['year'][1]}")
    if pq["like_titles"]:
        bits.append("like " + ", ".join(pq["like_titles"]))
    if pq["text"]:
        bits.append(f'text "{pq["text"]}"')
    return "; ".join(bits) or "nothing usable (ranked without the query)"


def _ev_short(e: dict) -> str:
    name = {
        "history": e.get("title", ""),
        "history_other": f"{e.get('count', 0)} other items",
        "query": "query",
        "popularity": "popularity",
        "interaction": "interaction",
    }.get(e["kind"], e["kind"])
    return f"{name} {e['contribution']:+.2f}"


def _title_for(result: dict) -> str:
    who = f"user {result['user']}" if result.get("user") else "you"
    q = f' asking "{result["query"]}"' if result.get("query") else ""
    return f"Top {len(result['items'])} for {who}{q} ({result['history_size']} history items)"


@app.command()
@_friendly
def recommend(
    model: Path = typer.Option(..., "--model", help="Model folder written by 'lucidrec train'."),
    user: str | None = typer.Option(None, "--user", help="A known user id."),
    history: str | None = typer.Option(None, "--history", help="Inline history: ITEM[:RATING],..."),
    query: str | None = typer.Option(None, "--query", help="What the user asks for, in words."),
    k: int = typer.Option(10, "--k", min=1, max=1000),
    explain: bool = typer.Option(False, "--explain", help="Add reasons and evidence."),
    lang: str = typer.Option("en", "--lang", help="Language of reasons: en or zh."),
    counterfactual: bool = typer.Option(
        False, "--counterfactual", help="Report the effect of removing the top cited item."
    ),
    include_seen: bool = typer.Option(False, "--include-seen", help="Allow items already in the history."),
    llm: bool = typer.Option(
        False,
        "--llm",
        help="Rephrase reasons with the OpenAI-compatible endpoint in "
        "LUCIDREC_LLM_BASE_URL / LUCIDREC_LLM_MODEL (checked; template on failure).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Recommend for a known user, an inline history and/or a query (serves with onnxruntime, no torch)."""
    from lucidrec.recommender import Recommender

    if user is None and history is None and not query:
        raise ConfigError("nothing to recommend for. Fix: pass --user ID, --history ITEM[:RATING],... or --query TEXT.")
    rewriter = None
    if llm:
        from lucidrec.rewriter import LLMRewriter

        rewriter = LLMRewriter.from_env()
        if rewriter is None:
            raise ConfigError(
                "--llm needs LUCIDREC_LLM_BASE_URL and LUCIDREC_LLM_MODEL in the environment "
                "(and LUCIDREC_LLM_API_KEY if the endpoint wants one)."
            )
    rec = Recommender.load(model, load_encoder=bool(query))
    result = rec.recommend(
        user=user,
        history=history,
        query=query,
        k=k,
        exclude_seen=not include_seen,
        explain=explain or counterfactual or llm,
        lang=lang,
        counterfactual=counterfactual,
        rewriter=rewriter,
    )
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        _print_recs(result, explain or counterfactual)


@app.command()
@_friendly
def demo(
    data: str = DataOpt,
    out_dir: Path = typer.Option(Path("models/ml100k"), "--out"),
    retrain: bool = typer.Option(False, "--retrain", help="Train even if a model folder exists."),
):
    """The main job: baselines and the language-model recommender on ML-100K, then sample recommendations."""
    from lucidrec.api import run_baselines
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
        console.print(f"[dim]reusing the trained model in {out_dir} (pass --retrain to train again)[/]")
    console.print("[bold]tuning and evaluating baselines...[/]")
    results = run_baselines(data=data, protocol="ratio", progress=None)
    results.append(evaluate_saved_model(out_dir, s).to_dict())
    out.print(_metric_table(results, "ratio protocol, test part, full ranking", ks=(10,)))
    rec = Recommender.load(out_dir)
    user = str(ds.user_ids[0])
    _print_recs(rec.recommend(user=user, k=10, explain=True), True)
    _print_recs(rec.recommend(query="a funny animated film for kids", k=10, explain=True), True)


# Commands that live in their own modules (one job each) register themselves here. Each module imports
# its heavy dependencies inside the command body so `lucidrec --help` stays fast.
# (service: serve; scale: batch; finetune: finetune-encoder)
from lucidrec.service.cli import register as _reg_serve; _reg_serve(app)  # noqa: E402, I001 # fmt: skip
from lucidrec.finetune import register as _reg_finetune; _reg_finetune(app)  # noqa: E402, I001 # fmt: skip
from lucidrec.batch import register as _reg_batch; _reg_batch(app)  # noqa: E402, I001 # fmt: skip


def main():  # pragma: no cover - console entry point
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
