"""Request and response bodies of the HTTP API (pydantic, unknown fields are errors)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Id = Field(min_length=1, max_length=256)
Scalar = str | float
ContextDict = dict[str, Scalar]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Filters(_Strict):
    attributes: dict[str, list[str]] = Field(default_factory=dict, max_length=32,
                                              description="Item attribute filters: field -> allowed values "
                                                          "(an item must match one value of every field).")
    allow: list[str] | None = Field(default=None, max_length=100_000, description="Only these item ids.")
    deny: list[str] = Field(default_factory=list, max_length=100_000, description="Never these item ids.")


class RecommendRequest(_Strict):
    user_id: str | None = Field(default=None, min_length=1, max_length=256,
                                description="Known or new user; their stored events are used.")
    history: list[str] | None = Field(default=None, max_length=2000,
                                      description="Anonymous history (item ids, oldest first); overrides the user's.")
    history_timestamps: list[float] | None = Field(default=None, max_length=2000)
    context: ContextDict = Field(default_factory=dict, max_length=64, description="Request context (key/value).")
    timestamp: float | None = Field(default=None, description="Request time, Unix seconds (default: now).")
    k: int = Field(default=10, ge=1, description="How many items (at most the service's max_k).")
    exclude_seen: bool = True
    filters: Filters | None = None
    text: str | None = Field(default=None, max_length=2000, description="Optional free-text query.")
    explain: bool = False


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model_version: str
    explanation: dict[str, Any] | None = None


class EventIn(_Strict):
    user_id: str = Id
    item_id: str = Id
    type: str = Field(default="interaction", min_length=1, max_length=64)
    timestamp: float | None = Field(default=None, description="Unix seconds (default: arrival time).")
    context: ContextDict = Field(default_factory=dict, max_length=64)


class EventBatch(_Strict):
    events: list[EventIn] = Field(min_length=1)


class EventsResponse(BaseModel):
    stored: int


class ItemIn(_Strict):
    item_id: str = Id
    fields: dict[str, str | float | list[str]] = Field(
        default_factory=dict, max_length=64,
        description="Text and attribute fields, e.g. {\"title\": ..., \"genres\": [...]} (the model's schema names).")


class ItemBatch(_Strict):
    items: list[ItemIn] = Field(min_length=1)


class ItemsResponse(BaseModel):
    added: list[str]
    catalogue_size: int


class SimilarResponse(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: str
    method: str


class ModelSwapRequest(_Strict):
    run_dir: str = Field(min_length=1, max_length=4096)


class ModelInfo(BaseModel):
    version: str
    kind: str
    path: str
    catalogue_size: int
    active_items: int
    index: str
