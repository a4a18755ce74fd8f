"""Batch recommendation for many users: Parquet in, Parquet out, in chunks, locally or on a Ray cluster.

Input (``users.parquet``), one row per user:

=============  ===================================  ==========================================================
column         type                                 meaning
=============  ===================================  ==========================================================
``user_id``    string or integer, required, unique  a user id; a user the model knows gets the stored history
``history``    list of item ids, or a string        optional inline history, oldest first; a string uses the
               such as ``"50:5,181:4,12"``          CLI's ``ITEM[:RATING],...`` format; added to a stored one
``ratings``    list of numbers                      optional ratings for a list ``history`` (same length)
``query``      string                               optional request in words (needs the model's encoder)
=============  ===================================  ==========================================================

Output (``recs.parquet``), one row per recommended item: ``user_id`` (string), ``rank`` (int32, 1 = best),
``item_id`` (string), ``score`` (float64, the model's exact score), ``title`` (string) and, with
``--evidence``, ``evidence`` (the JSON evidence list of ``recommend(explain=True)``) and ``reason``.

Memory stays bounded: users are read ``chunk_size`` rows at a time, each chunk's output is appended to the
Parquet file as a row group, and the file appears under its final name only when the job succeeded.
With ``engine="ray"`` the model folder - the one given, or the model this process serves written by
``Recommender.save`` when the job builds or drops an index or gets an in-memory model - is put in the Ray
object store once as its files' bytes (``encoder/`` only when rows have a query), each of a few actors
writes them to a private temporary folder and loads them with ``Recommender.load``, the local engine's
own loader, and user chunks are scored as actor tasks, at most two per actor in flight. The model and
the scoring code are the same on both engines, so the outputs are equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.errors import ConfigError, DataError, DependencyError, LucidrecError

if TYPE_CHECKING:
    import pyarrow as pa

    from lucidrec.recommender import Recommender

ENGINES = ("local", "ray")
INDEX_CHOICES = ("saved", "exact", "auto", "ivf", "hnsw")
OPTIONAL_COLUMNS = ("history", "ratings", "query")


# ====================================================================== input
def _check_schema(schema: pa.Schema, path: Path) -> list[str]:
    """Validate the users table's column types up front; returns the columns to read."""
    import pyarrow as pa

    names = schema.names
    if "user_id" not in names:
        raise DataError(
            f"{path}: no 'user_id' column (columns found: {', '.join(names) or 'none'}). Fix: name the user "
            "id column 'user_id' (optional: 'history', 'ratings', 'query')."
        )

    def is_id(t) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)

    t = schema.field("user_id").type
    if not is_id(t):
        raise DataError(f"{path}: column 'user_id' has type {t}. Fix: store user ids as strings or integers.")
    if "history" in names:
        t = schema.field("history").type
        ok = is_id(t) if not (pa.types.is_list(t) or pa.types.is_large_list(t)) else is_id(t.value_type)
        if not ok or pa.types.is_integer(t):
            raise DataError(
                f"{path}: column 'history' has type {t}. Fix: store a list of item ids per user (oldest "
                "first), or a string such as '50:5,181:4'."
            )
    if "ratings" in names:
        t = schema.field("ratings").type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not (
            pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)
        ):
            raise DataError(f"{path}: column 'ratings' has type {t}. Fix: store a list of numbers per user.")
        if "history" not in names:
            raise DataError(f"{path}: a 'ratings' column needs a 'history' column. Fix: add the items rated.")
    if "query" in names:
        t = schema.field("query").type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise DataError(f"{path}: column 'query' has type {t}. Fix: store queries as strings.")
    return ["user_id", *[c for c in OPTIONAL_COLUMNS if c in names]]


def _open_users(path: Path):
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{path}: file not found. Fix: check the --users path.")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types; all mean "not a readable parquet file"
        raise DataError(f"{path}: not a readable Parquet file ({e}). Fix: write it with pandas.to_parquet.") from None
    columns = _check_schema(pf.schema_arrow, path)
    # One cheap columnar pass over the ids: nulls and duplicates fail before any work is done.
    ids = pf.read(columns=["user_id"]).column("user_id")
    if ids.null_count:
        row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: 'user_id' is empty in row {row + 1}. Fix: fill or drop that row.")
    ids = np.asarray(ids.cast("string").to_numpy(zero_copy_only=False), dtype=str)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        bad = int(np.flatnonzero(counts > 1)[0])
        raise DataError(
            f"{path}: user_id '{uniq[bad]}' appears {counts[bad]} times (first in row {first[bad] + 1}). "
            "Fix: keep one row per user."
        )
    return pf, columns, len(ids)


def _rows(pf, columns: list[str], chunk_size: int) -> Iterator[list[dict]]:
    """The users table as lists of plain row dicts, ``chunk_size`` rows at a time, with their row numbers."""
    start = 0
    for batch in pf.iter_batches(batch_size=chunk_size, columns=columns):
        rows = batch.to_pylist()
        for k, r in enumerate(rows):
            r["_row"] = start + k + 1
            r["user_id"] = str(r["user_id"])
        start += len(rows)
        yield rows


def _history_spec(row: dict, path: str):
    hist = row.get("history")
    if hist is None:
        if row.get("ratings") is not None:
            raise DataError(f"{path} row {row['_row']}: 'ratings' without a 'history'. Fix: give both or neither.")
        return None
    if isinstance(hist, str):
        return hist
    ratings = row.get("ratings")
    if ratings is None:
        return [str(h) for h in hist]
    if len(ratings) != len(hist):
        raise DataError(
            f"{path} row {row['_row']} (user '{row['user_id']}'): {len(hist)} history items but "
            f"{len(ratings)} ratings. Fix: give one rating per history item (null for none)."
        )
    return [(str(h), r) for h, r in zip(hist, ratings)]


# ====================================================================== scoring (both engines run this)
def _columns(evidence: bool) -> dict[str, list]:
    return {c: [] for c in _table_columns(evidence)}


def score_chunk(
    rec: Recommender,
    rows: list[dict],
    k: int,
    evidence: bool = False,
    exclude_seen: bool = True,
    skip_unknown: bool = False,
    source: str = "users",
) -> dict[str, list]:
    """Top-``k`` for each row (dicts with ``user_id`` and optional history/ratings/query): the same items
    and scores as ``rec.recommend(user=..., history=..., query=..., k=k)``. Returns output columns.

    Rows without a query (the bulk of a batch job) share one index search per chunk and are then ranked
    by ``Recommender.rank``, the same code ``recommend`` ranks with; rows with a query go through
    ``recommend`` itself (their candidates depend on the parsed query)."""

    pieces: list[dict[str, list] | None] = [None] * len(rows)
    fast: list[tuple[int, list, object]] = []  # (position, history entries, user state)
    for pos, row in enumerate(rows):
        spec = _history_spec(row, source)
        if skip_unknown and spec is None and not rec.known_user(row["user_id"]):
            continue  # recommend() would refuse this user: nothing to personalise on
        try:
            if row.get("query"):
                pieces[pos] = _via_recommend(rec, row, spec, k, evidence, exclude_seen)
                continue
            entries, _ = rec.resolve_history(row["user_id"], spec)
        except LucidrecError as e:
            raise DataError(f"{source} row {row['_row']} (user '{row['user_id']}'): {e}") from None
        fast.append((pos, entries, rec._state_for(entries, None)))
    # One index search for the whole chunk; k plus the history covers the items excluded as seen.
    need = max((k + (len(e) if exclude_seen else 0) for _, e, _ in fast), default=k)
    cands = rec.candidate_items_many([st for _, _, st in fast], need) if fast else []
    for (pos, entries, state), cand in zip(fast, cands):
        res = rec.rank(state, entries, k=k, exclude_seen=exclude_seen, explain=evidence, candidates=cand)
        if res["items"]:
            pieces[pos] = _result_columns(rows[pos]["user_id"], res["items"], evidence)
    merged = _columns(evidence)
    for piece in pieces:
        if piece is not None:
            for c in merged:
                merged[c] += piece[c]
    return merged


def _via_recommend(rec: Recommender, row: dict, spec, k: int, evidence: bool, exclude_seen: bool) -> dict:
    if rec._query_encoder is None:
        raise ConfigError(
            "this row has a query but the model was loaded without its text encoder. Fix: use a model "
            "folder with encoder/ (written by 'lucidrec train'), or drop the 'query' column."
        )
    res = rec.recommend(
        user=row["user_id"], history=spec, query=row["query"], k=k, exclude_seen=exclude_seen, explain=evidence
    )
    return _result_columns(row["user_id"], res["items"], evidence)


def _result_columns(user: str, items: list[dict], evidence: bool) -> dict[str, list]:
    """One user's recommended items as output columns."""
    out = _columns(evidence)
    out["user_id"] = [user] * len(items)
    out["rank"] = [it["rank"] for it in items]
    out["item_id"] = [it["item_id"] for it in items]
    out["score"] = [float(it["score"]) for it in items]
    out["title"] = [it["title"] for it in items]
    if evidence:
        out["evidence"] = [json.dumps(it.get("evidence", []), ensure_ascii=False) for it in items]
        out["reason"] = [it.get("reason", "") for it in items]
    return out


def _table(cols: dict[str, list], evidence: bool) -> pa.Table:
    import pyarrow as pa

    fields = [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("title", pa.string()),
    ]
    if evidence:
        fields += [("evidence", pa.string()), ("reason", pa.string())]
    schema = pa.schema(fields)
    return pa.table({n: pa.array(cols[n], type=t) for n, t in fields}, schema=schema)


# ====================================================================== engines
class _LocalEngine:
    def __init__(self, rec: Recommender, opts: dict):
        self.rec, self.opts = rec, opts

    def map(self, chunks: Iterator[list[dict]]) -> Iterator[tuple[dict[str, list], int]]:
        for rows in chunks:
            yield score_chunk(self.rec, rows, **self.opts), len(rows)

    def close(self):
        pass


def model_folder_files(folder: str | Path, with_encoder: bool) -> dict[str, np.ndarray]:
    """Every file of a model folder as ``{relative path: bytes}`` (uint8 arrays, which Ray workers on one
    node read from the object store without a copy): what a Ray worker writes back to disk and loads with
    :meth:`Recommender.load`, exactly as the local engine loads the folder. ``encoder/`` is left out unless
    ``with_encoder`` (the local engine loads it only for rows with a query, too)."""
    root = Path(folder)
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or (not with_encoder and rel.parts[0] == "encoder"):
            continue
        files[rel.as_posix()] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return files


def load_model_files(files: dict[str, np.ndarray], load_encoder: bool) -> Recommender:
    """The Recommender :func:`model_folder_files` shipped: the files are written to a private temporary
    folder and read by ``Recommender.load`` (checksums and consistency checks included), which reads
    everything into memory; the folder is then deleted (an actor killed later leaves nothing behind)."""
    import shutil
    import tempfile

    from lucidrec.recommender import Recommender

    tmp = Path(tempfile.mkdtemp(prefix="lucidrec-model-"))
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(memoryview(data))
        # One onnxruntime thread: each actor holds one CPU.
        return Recommender.load(tmp, load_encoder=load_encoder, encoder_threads=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _folder_for_workers(model: str | Path | Recommender, rec: Recommender, index: str, has_query: bool, tmp: Path):
    """The model folder Ray workers load: the folder given, when the job serves it as saved; otherwise the
    model this process will serve (an index built or dropped for this job, an in-memory Recommender)
    written to ``tmp`` by the model's own writers - so the workers always load what the local engine
    serves, never a hand-picked list of its parts."""
    import shutil

    from lucidrec.errors import ModelError
    from lucidrec.io.model_check import write_manifest
    from lucidrec.retrieval import INDEX_FILES

    if not isinstance(model, (str, Path)):
        out = tmp / "model"
        try:
            # The encoder travels when rows have a query and the model has one to export.
            rec.save(out, export_encoder=has_query and rec._query_encoder is not None)
        except ModelError:
            raise ConfigError(
                "rows with a query on Ray need the model's text encoder, and this in-memory model has none "
                "that can be saved. Fix: pass the model folder path as the model, or drop the 'query' column."
            ) from None
        return out
    if index == "saved":
        return Path(model)
    out = tmp / "model"
    shutil.copytree(model, out, ignore=None if has_query else shutil.ignore_patterns("encoder"))
    if rec.retriever is not None:
        rec.retriever.save(out)  # replaces the folder's index files and their checksums
    else:
        for f in INDEX_FILES:
            (out / f).unlink(missing_ok=True)
        write_manifest(out, INDEX_FILES, create=False)
    return out


def require_ray():
    try:
        import ray
    except ImportError:
        raise DependencyError(
            "--engine ray needs Ray. Fix: pip install 'lucidrec[scale]' (or pip install ray), or use --engine local."
        ) from None
    return ray


class _RayEngine:
    """Chunks scored by Ray actors that share the model through the object store."""

    def __init__(
        self,
        opts: dict,
        address: str | None,
        num_cpus: int | None,
        workers: int | None,
        folder: Path,
        load_encoder: bool,
    ):
        ray = require_ray()
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
                # A small object store: the model is shared once; chunks are small.
                kwargs["object_store_memory"] = int(os.environ.get("LUCIDREC_RAY_STORE_BYTES", 0)) or None
            try:
                ray.init(**{k: v for k, v in kwargs.items() if v is not None})
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ConfigError(
                    f"--address {address!r}: could not start or reach Ray ({e}). Fix: check the address "
                    "(e.g. ray://host:10001 or 'auto'), or omit it to start Ray on this machine."
                ) from None
            self._started = True
        n_cpu = int(ray.cluster_resources().get("CPU", 1))
        self.n_actors = max(1, min(workers or n_cpu, n_cpu))
        # The model folder's bytes go into the object store once; every actor loads them with
        # Recommender.load, the local engine's own loader (one code path: same items, scores, reasons).
        files_ref = ray.put(model_folder_files(folder, load_encoder))

        @ray.remote(num_cpus=1)
        class Scorer:
            def __init__(self, files):
                self.rec = load_model_files(files, load_encoder)

            def score(self, rows):
                return score_chunk(self.rec, rows, **opts)

            def ready(self) -> bool:
                return True

        self.actors = [Scorer.remote(files_ref) for _ in range(self.n_actors)]
        try:
            ray.get([a.ready.remote() for a in self.actors])  # start-up is over when every actor has the model
        except Exception:
            self.close()  # no actors or Ray left behind by a failed start
            raise

    def map(self, chunks: Iterator[list[dict]]) -> Iterator[tuple[dict[str, list], int]]:
        """Results in input order, with at most two chunks per actor in flight (bounded memory)."""
        pending: list = []
        for k, rows in enumerate(chunks):
            pending.append((self.actors[k % self.n_actors].score.remote(rows), len(rows)))
            if len(pending) >= 2 * self.n_actors:
                yield self._get(*pending.pop(0))
        while pending:
            yield self._get(*pending.pop(0))

    def _get(self, ref, n: int) -> tuple[dict[str, list], int]:
        try:
            return self.ray.get(ref), n
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, LucidrecError):  # a bad row: the same clear error as the local engine
                raise cause from None
            raise

    def close(self):
        for a in self.actors:
            self.ray.kill(a)
        if self._started:
            self.ray.shutdown()


# ====================================================================== the job
def run_batch(
    model: str | Path | Recommender,
    users: str | Path,
    out: str | Path,
    k: int = 100,
    evidence: bool = False,
    engine: str = "local",
    address: str | None = None,
    chunk_size: int = 1000,
    index: str = "saved",
    exclude_seen: bool = True,
    skip_unknown: bool = False,
    num_cpus: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write top-``k`` recommendations for every row of ``users`` to ``out`` (Parquet). Returns a summary
    (users, rows written, seconds, users per second, engine, index kind)."""
    import time

    users, out = Path(users), Path(out)
    _check_options(engine, k, chunk_size, index, out)
    pf, columns, n_users = _open_users(users)
    has_query = "query" in columns
    rec = _model_for_job(model, has_query, index, progress)
    r = getattr(rec, "retriever", None)
    kind = "exact" if r is None else r.kind
    opts = {"k": k, "evidence": evidence, "exclude_seen": exclude_seen, "skip_unknown": skip_unknown}
    opts["source"] = str(users)
    t0 = time.perf_counter()
    if engine == "local":
        runner = _LocalEngine(rec, opts)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="lucidrec-batch-") as tmp:
            folder = _folder_for_workers(model, rec, index, has_query, Path(tmp))
            runner = _RayEngine(opts, address, num_cpus, workers, folder, load_encoder=has_query)
    setup = time.perf_counter() - t0  # Ray: start-up, model into the object store, actors built
    try:
        bar = {"total": n_users, "desc": f"batch ({engine})", "disable": not progress}
        written, done = _write_parquet(runner.map(_rows(pf, columns, chunk_size)), out, evidence, bar)
    finally:
        runner.close()
    seconds = time.perf_counter() - t0
    return {
        "users": done,
        "rows": written,
        "seconds": round(seconds, 3),
        "users_per_second": round(done / seconds, 2) if seconds > 0 else None,
        "setup_seconds": round(setup, 3),
        "scoring_users_per_second": round(done / (seconds - setup), 2) if seconds > setup else None,
        "engine": engine,
        "index": kind,
        "out": str(out),
    }


def _check_options(engine: str, k, chunk_size, index: str, out: Path) -> None:
    """The job's options, each refused with the option's name and the fix."""
    from lucidrec.pipeline.serving import MAX_K

    if engine not in ENGINES:
        raise ConfigError(f"--engine '{engine}': must be 'local' or 'ray'.")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ConfigError(f"--k {k!r}: must be an integer from 1 to {MAX_K}.")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"--chunk-size {chunk_size!r}: must be a positive integer. Fix: e.g. --chunk-size 1000.")
    if index not in INDEX_CHOICES:
        raise ConfigError(f"--index '{index}': must be one of {', '.join(INDEX_CHOICES)}.")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"--out {out}: the output is Parquet. Fix: name it e.g. recs.parquet.")


def _model_for_job(model: str | Path | Recommender, has_query: bool, index: str, progress: bool) -> Recommender:
    """The model the job serves (loaded from a folder, with its encoder only when rows have a query), with
    the candidate index ``index`` asks for: the saved one, none ("exact"), or one built now."""
    from lucidrec.recommender import Recommender

    rec = model if isinstance(model, Recommender) else Recommender.load(model, load_encoder=has_query)
    if index == "exact":
        rec.drop_index()
    elif index != "saved":
        rec.build_index(kind=index, progress=progress)
    return rec


def _write_parquet(results: Iterator[tuple[dict[str, list], int]], out: Path, evidence: bool, bar: dict):
    """Every chunk's columns into ``out``, written to a ``.partial`` file renamed at the end (an interrupted
    job leaves no half file). Returns (rows written, users done)."""
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    written, done = 0, 0
    writer = None
    try:
        with tqdm(unit="user", **bar) as progress:
            for cols, n_rows in results:
                table = _table(cols, evidence)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                written += table.num_rows
                done += n_rows
                progress.update(n_rows)
        if writer is None:  # no users at all: still write a valid, empty file
            writer = pq.ParquetWriter(tmp, _table({c: [] for c in _table_columns(evidence)}, evidence).schema)
        writer.close()
        writer = None
        tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return written, done


def _table_columns(evidence: bool) -> list[str]:
    cols = ["user_id", "rank", "item_id", "score", "title"]
    return cols + (["evidence", "reason"] if evidence else [])


__all__ = ["load_model_files", "model_folder_files", "run_batch", "score_chunk"]
