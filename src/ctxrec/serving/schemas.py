"""Request and response bodies of the HTTP API (pydantic, strict types, unknown fields are errors).

Every string a request can carry is checked here, before anything is written: it must encode as
UTF-8 (no lone surrogates), hold no NUL character and respect a length limit; timestamps must be
plausible Unix seconds. A value that fails is a 422 naming the field, never a stored row that later
breaks a read, a restart or a model swap."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

MIN_TIMESTAMP, MAX_TIMESTAMP = 0.0, 4_102_444_800.0
"""Plausible event times, Unix seconds: 1970-01-01 .. 2100-01-01."""
MAX_PATH_PART = 255
"""Longest file-name component (bytes) on the file systems the service runs on."""


def text_problem(s: str, max_len: int | None) -> str:
    """Why ``s`` cannot be accepted (or stored), or '' when it can."""
    if "\x00" in s:
        return "contains a NUL character (\\u0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode text (a lone surrogate {s[exc.start]!a} at position {exc.start})"
    if max_len is not None and len(s) > max_len:
        return f"is {len(s)} characters long; the limit is {max_len}"
    return ""


def _checked(max_len: int) -> AfterValidator:
    def check(s: str) -> str:
        problem = text_problem(s, max_len)
        if problem:
            raise ValueError(f"the text {problem}")
        return s

    return AfterValidator(check)


def _plausible_time(t: float) -> float:
    if not MIN_TIMESTAMP <= t <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {t!r} is outside the plausible range [{MIN_TIMESTAMP:.0f}, {MAX_TIMESTAMP:.0f}] "
                         "(Unix seconds, 1970..2100; send seconds, not milliseconds)")
    return t


def _path_parts(p: str) -> str:
    for part in p.split("/"):
        if len(part.encode("utf-8")) > MAX_PATH_PART:
            raise ValueError(f"the path component {part[:40]!r}... is {len(part.encode())} bytes; the file-name limit "
                             f"is {MAX_PATH_PART}")
    return p


IdStr = Annotated[str, Field(min_length=1, max_length=256), _checked(256)]
Key = Annotated[str, Field(min_length=1, max_length=64), _checked(64)]
Value = Annotated[str, Field(max_length=1000), _checked(1000)]
LongText = Annotated[str, Field(max_length=10_000), _checked(10_000)]
Timestamp = Annotated[float, AfterValidator(_plausible_time)]
Scalar = Value | float
ContextDict = dict[Key, Scalar]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Filters(_Strict):
    attributes: dict[Key, list[Value]] = Field(default_factory=dict, max_length=32,
                                              description="Item attribute filters: field -> allowed values "
                                                          "(an item must match one value of every field).")
    allow: list[IdStr] | None = Field(default=None, max_length=100_000, description="Only these item ids.")
    deny: list[IdStr] = Field(default_factory=list, max_length=100_000, description="Never these item ids.")


class RecommendRequest(_Strict):
    user_id: IdStr | None = Field(default=None,
                                description="Known or new user; their stored events are used.")
    history: list[IdStr] | None = Field(default=None, max_length=2000,
                                      description="Anonymous history (item ids, oldest first); overrides the user's.")
    history_timestamps: list[Timestamp] | None = Field(default=None, max_length=2000)
    context: ContextDict = Field(default_factory=dict, max_length=64, description="Request context (key/value).")
    timestamp: Timestamp | None = Field(default=None, description="Request time, Unix seconds (default: now).")
    k: int = Field(default=10, ge=1, description="How many items (at most the service's max_k); an integer "
                                                 "(true or 2.0 are errors).")
    exclude_seen: bool | None = Field(default=None, description="Leave out items in the user's history; default: "
                                       "yes, unless the model's users take items again (its data's repeat_consumption).")
    filters: Filters | None = None
    text: Annotated[str, _checked(2000)] | None = Field(default=None, max_length=2000, description="Optional free-text query.")
    explain: bool = False


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model_version: str
    explanation: dict[str, Any] | None = None
    context_used: bool = Field(True, description="False when the loaded model ignores request context.")
    context_unknown_values: dict[str, str] = Field(
        default_factory=dict, description="Context values never seen in training, by field (scored as unknown).")
    context_unused_fields: list[str] = Field(
        default_factory=list, description="Context fields of the training data that this model does not use.")


class EventIn(_Strict):
    user_id: IdStr
    item_id: IdStr
    type: Key = "interaction"
    timestamp: Timestamp | None = Field(default=None, description="Unix seconds (default: arrival time).")
    event_id: IdStr | None = Field(default=None, description="Optional client-chosen unique id: an event whose id is "
                                                               "already stored is acknowledged and not stored again, "
                                                               "so a client may retry any unacknowledged event.")
    context: ContextDict = Field(default_factory=dict, max_length=64)


class EventBatch(_Strict):
    events: list[EventIn] = Field(min_length=1)


def _one_or_many(batch_key: str) -> Any:
    """A body is the batch form when it carries ``batch_key``, else the one-object form: a 422 then
    names the fields of the form the client sent, not both forms' (``Field required: events`` for a
    single event)."""
    def pick(v: Any) -> str:
        return "many" if isinstance(v, dict) and batch_key in v else "one"
    return Discriminator(pick)


UNION_TAGS = ("one", "many")
"""The tags of the one-or-many bodies below; the service drops them from an error's location
(``body.item_id``, ``body.events.0.item_id``)."""

EventsBody = Annotated[Annotated[EventBatch, Tag("many")] | Annotated[EventIn, Tag("one")], _one_or_many("events")]
"""``POST /v1/events``: one event, or ``{"events": [...]}``."""


class EventsResponse(BaseModel):
    stored: int
    """Events newly stored."""
    duplicates: int = 0
    """Events whose event_id was already stored (acknowledged, not stored again)."""
    event_types_unknown: list[str] = []
    """Event types the serving model was not trained on (stored; the model reads them as an unknown type).
    Empty when the model does not tell event types apart (its training data had one)."""
    context_unused_fields: list[str] = []
    """Context fields of these events that the serving model does not read (stored, for a later model)."""
    context_unknown_values: dict[str, list[str]] = {}
    """Context values the serving model never saw in training, by field (stored; read as unknown)."""


class ItemIn(_Strict):
    item_id: IdStr
    fields: dict[Key, LongText | float | list[Value]] = Field(
        min_length=1, max_length=64,
        description="Text and attribute fields, e.g. {\"title\": ..., \"genres\": [...]} (the model's schema names).")


class ItemBatch(_Strict):
    items: list[ItemIn] = Field(min_length=1)


ItemsBody = Annotated[Annotated[ItemBatch, Tag("many")] | Annotated[ItemIn, Tag("one")], _one_or_many("items")]
"""``POST /v1/items``: one item, or ``{"items": [...]}``."""


class ItemsResponse(BaseModel):
    added: list[str]
    catalogue_size: int


class SimilarResponse(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: str
    method: str


class ModelSwapRequest(_Strict):
    run_dir: Annotated[str, Field(min_length=1, max_length=4096), _checked(4096), AfterValidator(_path_parts)]


class ModelInfo(BaseModel):
    version: str
    kind: str
    path: str
    catalogue_size: int
    active_items: int
    index: str
    state_runtime: str
    """What computes user states on a cache miss: "onnx", or "torch" (with why when ONNX was asked for)."""
