"""CLI command ``lucidrec recommend`` and how recommendations print in a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from lucidrec.cli.common import friendly, out, safe
from lucidrec.errors import ConfigError


def print_recs(result: dict, explain: bool):
    """A table of the recommendations. Every value from the data (ids, titles, queries, reasons that
    quote them) goes through :func:`safe`: printed as text, never read as rich markup or terminal codes."""
    table = Table(title=safe(_title_for(result)))
    for c in ("rank", "item", "title", "score"):
        table.add_column(c, justify="right" if c in ("rank", "score") else "left")
    if explain:
        table.add_column("reason")
        table.add_column("evidence")
    for it in result["items"]:
        row = [str(it["rank"]), safe(it["item_id"]), safe(it["title"]), f"{it['score']:.3f}"]
        if explain:
            ev = ", ".join(_ev_short(e) for e in it.get("evidence", []) if "contribution" in e)
            cf = it.get("counterfactual")
            row += [safe(it.get("reason", "")) + (f"\nWhat if: {safe(cf['text'])}" if cf else ""), safe(ev)]
        table.add_row(*row)
    out.print(table)
    pq = result.get("parsed_query")
    if pq is not None:
        out.print(f"[dim]understood as: {safe(_understood(pq))}[/]", soft_wrap=True)
        for note in pq.get("notes", []):
            out.print(f"[yellow]note:[/] {safe(note)}", soft_wrap=True)


def _understood(pq: dict) -> str:
    """One line saying how a query was parsed, e.g. 'genres Comedy; not Romance; years 1990-1999; text "dark"'."""
    bits = []
    fields = pq.get("fields") or {}
    if pq["genres"] and fields:  # a catalogue with several fields: "brand HATCHBOX; category_4 3D Printing Filament"
        by_field: dict[str, list[str]] = {}
        for v in pq["genres"]:
            by_field.setdefault(fields.get(v, "value"), []).append(v)
        bits += [f"{f} {' or '.join(vs)}" for f, vs in by_field.items()]
    elif pq["genres"]:
        bits.append("genres " + (" or " if pq["genre_mode"] == "any" else " and ").join(pq["genres"]))
    if pq["exclude_genres"]:
        bits.append("not " + ", ".join(pq["exclude_genres"]))
    if pq["year"]:
        bits.append(f"years {pq['year'][0]}-{pq['year'][1]}")
    for name, (lo, hi) in pq.get("ranges", {}).items():
        bits.append(
            f"{name} "
            + (f"{lo:g}-{hi:g}" if lo is not None and hi is not None else f"<= {hi:g}" if lo is None else f">= {lo:g}")
        )
    if pq["like_titles"]:
        bits.append("like " + ", ".join(pq["like_titles"]))
    # What the language model read the free text as (soft: ranks, never excludes), with its strength.
    soft = [v for v in pq.get("soft", []) if not v.get("like")]
    if soft:
        name = lambda v: " & ".join(v) if isinstance(v, list) else v  # noqa: E731 (several values read together)
        bits.append("read as " + ", then ".join(f"{name(v['value'])} {v['strength']:.2f}{_within(v)}" for v in soft))
    if pq.get("qualifier"):
        bits.append(f'qualifier "{pq["qualifier"]}" (read, not matched)')
    if pq["text"]:
        bits.append(f'text "{pq["text"]}"')
    for n in pq.get("not_applied", []):
        bits.append(f'"{n["text"]}" not applied (no {n["field"]} in this catalogue)')
    return "; ".join(bits) or "nothing usable (ranked without the query)"


def _within(v: dict) -> str:
    """The note of a value chosen among a broader value's items (" (7 of the 10 nearest Vacuums)"), else ""."""
    w = v.get("within")
    return f" ({w['holding']} of the {w['nearest']} nearest {w['value']})" if w else ""


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


def register(app: typer.Typer) -> None:
    """Add ``lucidrec recommend`` to ``app``."""

    @app.command()
    @friendly
    def recommend(
        model: Path = typer.Option(..., "--model", help="Model folder written by 'lucidrec train'."),
        user: str | None = typer.Option(None, "--user", help="A known user id."),
        history: str | None = typer.Option(None, "--history", help="Inline history: ITEM[:RATING],..."),
        query: str | None = typer.Option(None, "--query", help="What the user asks for, in words."),
        k: int = typer.Option(10, "--k", min=1, max=1000),
        explain: bool = typer.Option(False, "--explain", help="Add reasons and evidence."),
        lang: str = typer.Option("en", "--lang", help="Language of reasons: en or zh."),
        counterfactual: bool = typer.Option(
            False,
            "--counterfactual",
            help="Add a verified counterfactual: the fewest history items whose removal drops each item "
            "out of the top-k, and what replaces it.",
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
            raise ConfigError(
                "nothing to recommend for. Fix: pass --user ID, --history ITEM[:RATING],... or --query TEXT."
            )
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
            print_recs(result, explain or counterfactual)
