"""Loaders: every bad input raises a DataError naming the file/column/row and the fix; good inputs load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lucidrec.data import ItemSchema, ItemTextBuilder, from_dataframes, load_atomic, load_dataset, load_files
from lucidrec.errors import DataError, LucidrecError


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def raises_data_error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert isinstance(info.value, LucidrecError)
    assert "Fix:" in msg, msg
    return msg


def test_data_error_is_a_lucidrec_error():
    assert issubclass(DataError, LucidrecError)
    assert issubclass(LucidrecError, Exception)


# ----------------------------------------------------------------------------- missing files
def test_load_files_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "not found" in msg


def test_load_files_missing_item_file(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item\n1,10\n")
    path = tmp_path / "missing_items.csv"
    msg = raises_data_error(load_files, inter, items=path)
    assert str(path) in msg


def test_load_atomic_missing_folder(tmp_path):
    path = tmp_path / "no_such_folder"
    msg = raises_data_error(load_atomic, path)
    assert str(path) in msg


def test_load_atomic_folder_without_inter_file(tmp_path):
    msg = raises_data_error(load_atomic, tmp_path)
    assert str(tmp_path) in msg
    assert ".inter" in msg


def test_load_atomic_missing_named_inter_file(tmp_path):
    msg = raises_data_error(load_atomic, tmp_path, name="mini")
    assert "mini.inter" in msg


def test_load_dataset_missing_path(tmp_path):
    path = tmp_path / "nothing_here"
    msg = raises_data_error(load_dataset, str(path))
    assert str(path) in msg


def test_load_dataset_missing_csv(tmp_path):
    path = tmp_path / "nothing_here.csv"
    msg = raises_data_error(load_dataset, str(path))
    assert str(path) in msg


# ----------------------------------------------------------------------------- bad contents
def test_missing_column_in_interactions_csv(tmp_path):
    path = write(tmp_path / "inter.csv", "userId,item,rating\n1,10,4\n2,11,3\n")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "'user'" in msg
    assert "userId" in msg  # the columns actually found are listed


def test_duplicate_item_ids_in_item_table(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item\n1,10\n2,11\n")
    items = write(tmp_path / "items.csv", "item,title\n10,A\n11,B\n10,C\n")
    msg = raises_data_error(load_files, inter, items=items)
    assert "'10'" in msg
    assert "item table" in msg
    assert "row 3" in msg


def test_duplicate_item_ids_message_names_the_item_file(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item\n1,10\n2,11\n")
    items = write(tmp_path / "items.csv", "item,title\n10,A\n11,B\n10,C\n")
    msg = raises_data_error(load_files, inter, items=items)
    assert "items.csv" in msg


def test_duplicate_item_ids_dataframe():
    inter = pd.DataFrame({"user": [1, 2], "item": [10, 11]})
    items = pd.DataFrame({"item": [10, 11, 11], "title": ["A", "B", "B2"]})
    msg = raises_data_error(from_dataframes, inter, items, source="frames")
    assert "'11'" in msg and "row 3" in msg and "frames" in msg


def test_interactions_name_unknown_items(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item\n1,10\n2,11\n3,99\n4,98\n")
    items = write(tmp_path / "items.csv", "item,title\n10,A\n11,B\n")
    msg = raises_data_error(load_files, inter, items=items)
    assert str(inter) in msg
    assert "'99'" in msg
    assert "row 3" in msg
    assert "2 such rows" in msg


def test_non_numeric_rating(tmp_path):
    path = write(tmp_path / "inter.csv", "user,item,rating\n1,10,4\n2,11,abc\n3,12,5\n")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "'rating'" in msg
    assert "row 2" in msg
    assert "'abc'" in msg


def test_non_numeric_timestamp(tmp_path):
    path = write(tmp_path / "inter.csv", "user,item,timestamp\n1,10,100\n2,11,200\n3,12,yesterday\n")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "'timestamp'" in msg
    assert "row 3" in msg
    assert "yesterday" in msg


def test_missing_rating_value(tmp_path):
    path = write(tmp_path / "inter.csv", "user,item,rating\n1,10,4\n2,11,\n")
    msg = raises_data_error(load_files, path)
    assert "'rating'" in msg and "row 2" in msg


def test_empty_interaction_file(tmp_path):
    path = write(tmp_path / "inter.csv", "")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "empty" in msg


def test_header_only_interaction_file(tmp_path):
    path = write(tmp_path / "inter.csv", "user,item,rating\n")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "empty" in msg


def test_empty_atomic_inter_file(tmp_path):
    write(tmp_path / "mini.inter", "")
    msg = raises_data_error(load_atomic, tmp_path)
    assert "mini.inter" in msg and "empty" in msg


def test_empty_dataframe():
    msg = raises_data_error(from_dataframes, pd.DataFrame({"user": [], "item": []}), source="my-frame")
    assert "my-frame" in msg
    assert "empty" in msg


def test_dataframe_without_columns():
    msg = raises_data_error(from_dataframes, pd.DataFrame(), source="my-frame")
    assert "'user'" in msg and "'item'" in msg


def test_empty_item_dataframe():
    inter = pd.DataFrame({"user": [1], "item": [10]})
    msg = raises_data_error(from_dataframes, inter, pd.DataFrame({"item": [], "title": []}))
    assert "item table" in msg and "empty" in msg


def test_missing_user_id_value():
    inter = pd.DataFrame({"user": [1, None, 3], "item": [10, 11, 12]})
    msg = raises_data_error(from_dataframes, inter)
    assert "'user'" in msg and "row 2" in msg


def test_wrong_encoding_csv(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_bytes(b"user,item,title\n1,10,Tea\n2,11,Caf\xe9\n")
    msg = raises_data_error(load_files, path)
    assert str(path) in msg
    assert "line 3" in msg
    assert "utf-8" in msg.lower()


def test_wrong_encoding_csv_is_readable_with_the_right_encoding(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item\n1,10\n2,11\n")
    items = tmp_path / "items.csv"
    items.write_bytes("item,title\n10,Tea\n11,Caf\xe9\n".encode("latin-1"))
    raises_data_error(load_files, inter, items=items)
    ds = load_files(inter, items=items, encoding="latin-1")
    assert list(ds.items["title"]) == ["Tea", "Caf\xe9"]


def test_wrong_encoding_atomic_item_file(tmp_path):
    write(tmp_path / "mini.inter", "user_id:token\titem_id:token\n1\t10\n2\t11\n")
    path = tmp_path / "mini.item"
    path.write_bytes(b"item_id:token\tmovie_title:token_seq\n10\tTea\n11\tCaf\xe9 Noir\n")
    msg = raises_data_error(load_atomic, tmp_path)
    assert str(path) in msg
    assert "line 3" in msg


def test_atomic_header_without_type(tmp_path):
    path = write(tmp_path / "mini.inter", "user_id\titem_id:token\n1\t10\n")
    msg = raises_data_error(load_atomic, tmp_path)
    assert str(path) in msg
    assert "'user_id'" in msg
    assert ":type" in msg


def test_unsupported_file_type(tmp_path):
    path = write(tmp_path / "inter.json", "{}")
    msg = raises_data_error(load_dataset, str(path))
    assert ".json" in msg


# ----------------------------------------------------------------------------- loaders that work
def test_csv_with_column_mapping(tmp_path):
    inter = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,100\n1,11,3.5,200\n2,10,5,150\n")
    items = write(tmp_path / "movies.csv", "movieId,title,genres\n10,Alpha,Comedy|Drama\n11,Beta,Horror\n12,Gamma,\n")
    ds = load_files(inter, items=items, columns={"user": "userId", "item": "movieId"})
    assert (ds.n_users, ds.n_items, len(ds)) == (2, 3, 3)
    assert ds.name == "ratings"
    assert list(ds.user_ids) == ["1", "2"]
    assert list(ds.item_ids) == ["10", "11", "12"]
    assert ds.interactions["rating"].tolist() == [4.0, 3.5, 5.0]
    assert ds.interactions["timestamp"].tolist() == [100.0, 200.0, 150.0]
    assert ds.interactions["item"].tolist() == ["10", "11", "10"]
    assert ds.interactions["iidx"].tolist() == [0, 1, 0]
    assert ds.schema.categorical == ["genres"]
    assert ds.items["genres"].tolist() == [["Comedy", "Drama"], ["Horror"], []]
    assert ds.matrix().toarray().tolist() == [[1, 1, 0], [1, 0, 0]]


def test_parquet_round_trip(tmp_path, tiny_frames):
    interactions, items = tiny_frames
    items = items.assign(genres=items["genres"].str.split("|"))
    interactions.to_parquet(tmp_path / "inter.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    from_files = load_files(tmp_path / "inter.parquet", items=tmp_path / "items.parquet")
    from_frames = from_dataframes(interactions, items)
    assert (from_files.n_users, from_files.n_items, len(from_files)) == (30, 40, len(interactions))
    pd.testing.assert_frame_equal(from_files.interactions, from_frames.interactions)
    assert list(from_files.item_ids) == list(from_frames.item_ids)
    assert list(from_files.user_ids) == list(from_frames.user_ids)
    assert from_files.items["genres"].tolist() == items["genres"].tolist()
    assert list(from_files.titles()) == list(from_frames.titles())


def test_load_dataset_dispatches_csv_and_parquet(tmp_path, tiny_frames):
    interactions, _ = tiny_frames
    interactions.to_csv(tmp_path / "x.csv", index=False)
    interactions.to_parquet(tmp_path / "x.parquet")
    a, b = load_dataset(str(tmp_path / "x.csv")), load_dataset(str(tmp_path / "x.parquet"))
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert len(a) == len(interactions)


def test_recbole_atomic_folder(tmp_path):
    write(
        tmp_path / "mini.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t100\n1\t11\t2\t101\n2\t11\t5\t99\n3\t12\t1\t50\n",
    )
    write(
        tmp_path / "mini.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tThe Alpha\t1999\tComedy Drama\n11\tBeta\t\tHorror\n12\tGamma Ray\t2001\t\n",
    )
    write(tmp_path / "mini.user", "user_id:token\tage:float\n1\t20\n2\t30\n3\t40\n4\t50\n")
    for ds in (load_atomic(tmp_path), load_dataset(str(tmp_path))):
        assert ds.name == "mini"
        assert (ds.n_users, ds.n_items, len(ds)) == (4, 3, 4)  # user 4 comes from the user table only
        assert ds.schema == ItemSchema(
            title="movie_title", categorical=["class"], numeric=["release_year"], year="release_year"
        )
        assert list(ds.titles()) == ["The Alpha (1999)", "Beta", "Gamma Ray (2001)"]
        assert ds.items["class"].tolist() == [["Comedy", "Drama"], ["Horror"], []]
        assert ds.interactions["rating"].tolist() == [4.0, 2.0, 5.0, 1.0]
        assert ds.interactions["timestamp"].tolist() == [100.0, 101.0, 99.0, 50.0]
        assert list(ds.user_ids) == ["1", "2", "3", "4"]


def test_dataframe_loader(tiny_frames):
    interactions, items = tiny_frames
    ds = from_dataframes(interactions, items, name="tiny")
    assert (ds.n_users, ds.n_items, len(ds)) == (30, 40, len(interactions))
    assert ds.schema.title == "title" and ds.schema.year == "year"
    assert ds.schema.categorical == ["genres"] and ds.schema.text == ["description"]
    # non-numeric user ids sort as strings
    assert list(ds.user_ids[:3]) == ["u0", "u1", "u10"]
    assert set(ds.user_ids) == {f"u{u}" for u in range(30)}
    assert ds.interactions["item"].tolist() == interactions["item"].astype(str).tolist()
    assert np.array_equal(ds.item_ids[ds.interactions["iidx"]], ds.interactions["item"])
    assert np.array_equal(ds.user_ids[ds.interactions["uidx"]], ds.interactions["user"])
    assert ds.items["genres"].map(len).between(1, 3).all()


def test_dataframe_loader_without_items_or_ratings():
    ds = from_dataframes(pd.DataFrame({"u": [3, 1, 3], "i": ["b", "a", "a"]}), columns={"user": "u", "item": "i"})
    assert list(ds.item_ids) == ["b", "a"]
    assert list(ds.user_ids) == ["1", "3"]
    assert ds.interactions["rating"].tolist() == [1.0, 1.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [0.0, 1.0, 2.0]


def test_numeric_user_ids_sort_naturally():
    ds = from_dataframes(pd.DataFrame({"user": [10, 9, 100, 2], "item": [1, 1, 1, 1]}))
    assert list(ds.user_ids) == ["2", "9", "10", "100"]


def test_item_text_ml100k(ml100k):
    texts = ItemTextBuilder().build(ml100k)
    assert len(texts) == ml100k.n_items == 1682
    assert texts[ml100k.item_idx("1")] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    # the 'unknown' genre is noise and never shown
    assert not any("unknown" in t.split("Genres:")[-1] for t in texts if "Genres:" in t)


def test_item_text_labels_and_fields(tiny_dataset):
    ds = tiny_dataset
    i = ds.item_idx(100)
    row = ds.items.iloc[i]
    year, genres = int(row["year"]), ", ".join(row["genres"])
    default = ItemTextBuilder().build(ds)[i]
    assert default == f"Item 100 ({year}). Genres: {genres}. Description of item 100."
    labelled = ItemTextBuilder(labels={"genres": "Kinds"}, fields=["genres"]).build(ds)[i]
    assert labelled == f"Item 100 ({year}). Kinds: {genres}."
    only_text = ItemTextBuilder(fields=["description"]).build(ds)[i]
    assert only_text == f"Item 100 ({year}). Description of item 100."
    capped = ItemTextBuilder(max_chars=12).build(ds)
    assert all(len(t) <= 12 for t in capped) and capped[i] == default[:12]
