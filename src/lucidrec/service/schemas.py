"""Request and response models of the HTTP API (pydantic): the API's contract and its OpenAPI schema.

Requests forbid unknown fields and bound every size, so a typo or an oversized input gets a 4xx that
names the field. Responses allow extra keys: whatever ``Recommender.recommend`` adds (``parsed_query``,
``constraints_met``, ``counterfactual``...) passes through without a change here.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

MAX_ID_CHARS = 128
MAX_HISTORY = 1000
MAX_EXCLUDE = 2000
MAX_QUERY_CHARS = 2000  # same limit as the Python API (recommender.MAX_QUERY_CHARS)
MAX_K = 1000

# The id policy (README, "Ids"): ids are strings of 1..128 printable characters; '/', ',', ':', spaces and
# any other printable character are allowed, because every door that writes an id has a door that reads and
# forgets it (paths take the id percent-encoded, e.g. team%2Falice, or with its '/' as it is). Refused at
# write time: control characters, and the ids '.' and '..', which no URL path can carry (clients rewrite
# them as "this folder" / "the folder above"). JSON numbers become strings (item 50 == "50").
UNPATHABLE_IDS = (".", "..")


def _pathable(value: str) -> str:
    if value in UNPATHABLE_IDS:
        raise ValueError(
            f"the id '{value}' cannot be sent in a URL path (clients rewrite it), so it could never be read or "
            "forgotten. Fix: use another id"
        )
    return value


Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_pathable),
]


def check_id(value: str, field: str) -> str:
    """The same rule for an id that arrives in a URL path (a ConfigError, answered 422 naming ``field``)."""
    from lucidrec.errors import ConfigError

    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{field}: the id holds control characters. Fix: send the id as stored, percent-encoded.")
    return value


# Strict: a JSON number only (true or "5" is a 422 naming the field, never silently 1.0 or 5.0).
Rating = Annotated[StrictFloat, Field(ge=0, le=5, allow_inf_nan=False)]
# Client timestamps: Unix seconds from 1970 to a day ahead (clock skew); 1e308 would sort a row after
# every future one and never be displaced from a user's most recent rows.
MAX_FUTURE_SECONDS = 86_400

EVENTS = ("rated", "liked", "disliked", "clicked", "interacted")
# The model weighs history items by rating bin (0..5); an event without a rating counts as the model's
# implicit default (like an inline history item without a rating), except "disliked", the lowest bin used.
EVENT_DEFAULT_RATING: dict[str, float | None] = {"disliked": 1.0}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class HistoryItem(_Request):
    item: Id = Field(description="Item id from the catalog.")
    rating: Rating | None = Field(None, description="Rating 0..5; omit for an implicit interaction.")


class Filters(_Request):
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_EXCLUDE, description="Item ids never to return.")
    genres: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=50, description="Return only items with at least one of these genres (catalog names)."
    )
    year_min: StrictInt | None = Field(None, ge=0, le=3000, description="Return only items from this year on.")
    year_max: StrictInt | None = Field(None, ge=0, le=3000, description="Return only items up to this year.")
    include_seen: StrictBool = Field(False, description="Also return items already in the history.")

    @field_validator("year_max")
    @classmethod
    def _years(cls, v, info: ValidationInfo):
        lo = info.data.get("year_min")
        if v is not None and lo is not None and lo > v:
            raise ValueError(f"year_min {lo} is after year_max {v}. Fix: swap them.")
        return v


class RecommendRequest(_Request):
    user: Id | None = Field(None, description="A user id: their stored history (feedback included) is used.")
    history: list[HistoryItem] | None = Field(
        None, max_length=MAX_HISTORY, description="An inline history, oldest first (added after the stored one)."
    )
    query: StrictStr | None = Field(None, max_length=MAX_QUERY_CHARS, description="What the user asks for, in words.")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="How many items to return (1..1000).")
    filters: Filters = Field(default_factory=Filters)
    explain: StrictBool = Field(True, description="Attach evidence and a reason to each item.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the reasons.")
    counterfactual: StrictBool = Field(
        False,
        description="Also report a verified counterfactual: the smallest set of history items whose removal "
        "drops each item out of the top-k, and what takes its place (null when no set of <= 10 does).",
    )

    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,
        json_schema_extra={"examples": [{"user": "196", "query": "a dark crime thriller", "k": 10, "lang": "en"}]},
    )


class FeedbackRequest(_Request):
    user: Id
    item: Id
    event: Literal[EVENTS] = Field("liked", description="rated (needs rating), liked, disliked, clicked, interacted.")
    rating: Rating | None = Field(None, validate_default=True, description="0..5; required for 'rated'.")
    timestamp: StrictFloat | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Unix seconds (1970 up to a day from now); default: now. Orders the user's history.",
    )

    @field_validator("rating")
    @classmethod
    def _rating_for_rated(cls, v, info: ValidationInfo):
        if info.data.get("event") == "rated" and v is None:
            raise ValueError("event 'rated' needs a rating. Fix: add \"rating\": 0..5, or use event 'liked'")
        return v

    @field_validator("timestamp")
    @classmethod
    def _not_far_future(cls, v):
        if v is not None and v > time.time() + MAX_FUTURE_SECONDS:
            raise ValueError(
                f"{v:g} is more than a day in the future. Fix: send Unix seconds (e.g. {time.time():.0f}) or omit it"
            )
        return v

    def effective_timestamp(self, now: float) -> float:
        return now if self.timestamp is None or not math.isfinite(self.timestamp) else self.timestamp


# ---------------------------------------------------------------------- responses (permissive: extra keys pass)
class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class Evidence(_Response):
    kind: str
    contribution: float | None = None


class RecommendedItem(_Response):
    item_id: str
    title: str
    score: float
    rank: int
    evidence: list[Evidence] | None = None
    reason: str | None = None


class RecommendResponse(_Response):
    user: str | None
    query: str | None
    history_source: str
    history_size: int
    items: list[RecommendedItem]


class FeedbackResponse(BaseModel):
    id: int
    user: str
    item: str
    event: str
    rating: float | None
    timestamp: float
    history_size: int


class HistoryRow(BaseModel):
    id: int
    item: str
    title: str | None
    event: str
    rating: float | None
    timestamp: float


class HistoryResponse(BaseModel):
    user: str
    size: int
    total: int = Field(description="All rows stored for the user (size is the page returned).")
    history: list[HistoryRow]


class DeleteResponse(BaseModel):
    user: str
    deleted_rows: int
    wal_checkpointed: bool = Field(description="The rows are gone from the database file and its WAL.")
    model_folder_tombstone: bool = Field(
        description="A tombstone in the model folder: every later load of the folder (recommend, batch, serve, "
        "a fresh database's seeding) treats this user as a stranger, and 'lucidrec train --out' leaves them out."
    )
    already_forgotten: bool = Field(
        False, description="Nothing was left to erase: the user had been forgotten before (this call completed it)."
    )


class Item(BaseModel):
    item_id: str
    title: str
    genres: list[str]
    year: int | None


class ItemSearchResponse(BaseModel):
    search: str | None
    count: int
    items: list[Item]


class UserSummary(BaseModel):
    user: str
    events: int


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, naming the field, and how to fix it.")
    field: str | None = None
    errors: list[dict] | None = None
