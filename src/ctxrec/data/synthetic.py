"""A seeded simulator of context-dependent event logs with known effects, for known-answer tests.

Real data never tells us what a model *should* learn; here every effect is planted by construction
and exposed in a :class:`SimulatedTruth`, so tests can check that a model (or the data pipeline)
recovers it:

(a) **popularity**: item weights are Zipf-like, ``w_i = 1 / rank_i ** popularity_alpha`` over a
    seeded random ranking of the catalogue;
(b) **sequence**: each item has one fixed successor (the next item of a random cycle through its
    genre); after an item, the next event is its successor with probability ``sequential_strength``;
(c) **context**: every event has ``daypart`` (from the UTC hour of its timestamp), ``device`` and
    ``weather``; a seeded table maps each ``(daypart, device)`` cell to a preferred genre, and a
    fresh (non-successor) event draws its genre with weight ``exp(context_strength)`` toward it.
    ``weather`` is a distractor: it is realistic (one weather per calendar day) but has no effect;
(d) **text**: each genre has its own vocabulary; item titles/descriptions draw each word from it
    with probability ``text_strength`` (else from shared filler words), so items of one genre are
    similar in text. ``genre`` is also an item attribute.

Users have a latent preferred genre (weight ``exp(user_strength)``) and a home device, and act in
sessions (minutes apart, one time of day) separated by days, starting at staggered dates, so a
global temporal split has users on both sides of its cut points. A fresh
event's item is drawn with probability ``∝ w_i · exp(context_strength·[g_i = g_ctx]) ·
exp(user_strength·[g_i = g_user])`` -- sampled as genre first (genre mass ``W_g = Σ_{i∈g} w_i``),
then item within genre ``∝ w_i``, which is the same distribution. With ``allow_repeats=False`` (the
default, matching ``EvalConfig.exclude_seen=True``) a user never sees an item twice: a successor
already seen is skipped (a fresh draw instead) and fresh draws are rejection-sampled, i.e. drawn
from the distribution restricted to unseen items (:meth:`SimulatedTruth.next_item_probs`).

Ids are zero-padded (``u0042``, ``i0007``) so the dataset's dense indices equal the simulator's
indices: ``truth.item_genre[data.item_idx]`` is the genre of every event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.dataset import Dataset

DAYPARTS: tuple[str, ...] = ("night", "morning", "afternoon", "evening")
"""``night`` = hours [0, 6), ``morning`` = [6, 12), ``afternoon`` = [12, 18), ``evening`` = [18, 24) (UTC)."""
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tv")
WEATHERS: tuple[str, ...] = ("sunny", "cloudy", "rainy", "snowy")
_WEATHER_P = np.array([0.5, 0.3, 0.15, 0.05])

_FILLER: tuple[str, ...] = (
    "the", "a", "of", "and", "with", "new", "classic", "edition", "collection", "story", "great",
    "best", "original", "special", "complete", "series", "volume", "deluxe", "guide", "life",
    "world", "night", "day", "home", "first", "last", "little", "big", "modern", "essential",
)
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "n", "r", "s", "l", "x")


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """What to simulate. Every effect has a strength; 0 switches it off."""

    n_users: int = 1000
    n_items: int = 500
    n_genres: int = 8
    events_per_user: float = 30.0
    """Mean events per user (Poisson), floored at ``min_events_per_user``."""
    min_events_per_user: int = 5
    seed: int = 0
    popularity_alpha: float = 1.0
    """Zipf exponent of item popularity (0 = uniform)."""
    context_strength: float = 3.0
    """Log-weight of the (daypart, device) cell's preferred genre (0 = context has no effect)."""
    user_strength: float = 1.0
    """Log-weight of the user's latent preferred genre (0 = users are interchangeable)."""
    sequential_strength: float = 0.3
    """Probability that the next event is the previous item's successor (in [0, 1])."""
    text_strength: float = 0.6
    """Probability that a text word comes from the item's genre vocabulary (0 = text says nothing)."""
    words_per_genre: int = 20
    title_words: int = 3
    description_words: int = 20
    device_loyalty: float = 0.7
    """Probability that an event happens on the user's home device (else a uniform device)."""
    allow_repeats: bool = False
    """False: a user never interacts with an item twice (per-user counts are capped at ``n_items``)."""
    start_timestamp: float = 1_577_836_800.0
    """Unix seconds of the earliest possible first event (default 2020-01-01 00:00 UTC)."""
    span_days: float = 90.0
    """Users start uniformly within this many days after ``start_timestamp`` (so their activity
    periods overlap and a global temporal split has users on both sides of its cut points)."""
    session_length: float = 4.0
    """Mean events per session (geometric): a user's events come in sessions at one time of day."""
    event_gap_minutes: float = 10.0
    """Mean (exponential) time between consecutive events of one session."""
    session_gap_days: float = 3.0
    """Mean (exponential) time between sessions; long enough that each session's hour is ~uniform."""

    def __post_init__(self) -> None:
        checks = [
            (self.n_users >= 1, "n_users", self.n_users, "must be at least 1"),
            (self.n_genres >= 1, "n_genres", self.n_genres, "must be at least 1"),
            (self.n_items >= self.n_genres, "n_items", self.n_items, f"must be at least n_genres={self.n_genres}"),
            (self.events_per_user > 0, "events_per_user", self.events_per_user, "must be positive"),
            (self.min_events_per_user >= 1, "min_events_per_user", self.min_events_per_user, "must be at least 1"),
            (self.popularity_alpha >= 0, "popularity_alpha", self.popularity_alpha, "must be >= 0"),
            (np.isfinite(self.context_strength), "context_strength", self.context_strength, "must be finite"),
            (np.isfinite(self.user_strength), "user_strength", self.user_strength, "must be finite"),
            (0 <= self.sequential_strength <= 1, "sequential_strength", self.sequential_strength, "must be in [0, 1]"),
            (0 <= self.text_strength <= 1, "text_strength", self.text_strength, "must be in [0, 1]"),
            (0 <= self.device_loyalty <= 1, "device_loyalty", self.device_loyalty, "must be in [0, 1]"),
            (self.words_per_genre >= 1, "words_per_genre", self.words_per_genre, "must be at least 1"),
            (self.title_words >= 1, "title_words", self.title_words, "must be at least 1"),
            (self.description_words >= 0, "description_words", self.description_words, "must be >= 0"),
            (self.span_days >= 0, "span_days", self.span_days, "must be >= 0"),
            (self.session_length >= 1, "session_length", self.session_length, "must be at least 1"),
            (self.event_gap_minutes > 0, "event_gap_minutes", self.event_gap_minutes, "must be positive"),
            (self.session_gap_days > 0, "session_gap_days", self.session_gap_days, "must be positive"),
        ]
        for ok, name, value, why in checks:
            if not ok:
                raise ConfigError(f"SimulatorConfig.{name}={value!r} {why}")


@dataclass(frozen=True, kw_only=True, eq=False)
class SimulatedTruth:
    """The planted effects, indexed by the dataset's dense user/item indices."""

    config: SimulatorConfig
    genre_names: tuple[str, ...]
    genre_words: tuple[tuple[str, ...], ...]
    """Each genre's private vocabulary (filler words are shared by all genres)."""
    item_genre: np.ndarray  # (n_items,) int64
    item_popularity: np.ndarray  # (n_items,) float64 Zipf weights, sum 1
    successor: np.ndarray  # (n_items,) int64, same genre as the item (itself in a 1-item genre)
    user_genre: np.ndarray  # (n_users,) int64 latent preferred genre
    user_device: np.ndarray  # (n_users,) int64 index into DEVICES (home device)
    context_genre: np.ndarray  # (len(DAYPARTS), len(DEVICES)) int64 preferred genre per cell
    genre_mass: np.ndarray  # (n_genres,) popularity mass per genre: a fresh genre's base rate w/o user/context pull
    followed_successor: np.ndarray  # (n_events,) bool, aligned with data.interactions rows
    dayparts: tuple[str, ...] = DAYPARTS
    devices: tuple[str, ...] = DEVICES
    weathers: tuple[str, ...] = WEATHERS

    def preferred_genre(self, daypart: str, device: str) -> int:
        """The genre that context cell ``(daypart, device)`` pulls toward."""
        try:
            return int(self.context_genre[DAYPARTS.index(daypart), DEVICES.index(device)])
        except ValueError:
            raise ValueError(
                f"unknown context ({daypart!r}, {device!r}); dayparts are {DAYPARTS}, devices {DEVICES}"
            ) from None

    def genre_probs(self, user: int, daypart: str, device: str) -> np.ndarray:
        """``(n_genres,)`` genre distribution of a fresh (non-successor) event."""
        cfg = self.config
        logw = np.log(self.genre_mass)
        logw[self.preferred_genre(daypart, device)] += cfg.context_strength
        logw[self.user_genre[user]] += cfg.user_strength
        p = np.exp(logw - logw.max())
        return p / p.sum()

    def next_item_probs(
        self,
        user: int,
        daypart: str,
        device: str,
        prev_item: int | None = None,
        seen: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(n_items,)`` exact generative distribution of the next event (the Bayes-optimal scores).

        ``seen`` (the user's earlier items) matters only when ``allow_repeats`` is False.
        """
        cfg = self.config
        g = self.genre_probs(user, daypart, device)
        mass = self.genre_mass[self.item_genre]
        fresh = g[self.item_genre] * self.item_popularity / mass
        follow = cfg.sequential_strength if prev_item is not None and prev_item >= 0 else 0.0
        succ = int(self.successor[prev_item]) if follow else -1
        if not cfg.allow_repeats and seen is not None and len(seen):
            fresh = fresh.copy()
            fresh[np.asarray(seen, dtype=np.int64)] = 0.0
            if succ >= 0 and np.isin(succ, seen):
                follow = 0.0
        total = fresh.sum()
        out = fresh / total * (1.0 - follow) if total > 0 else np.zeros_like(fresh)
        if follow:
            out[succ] += follow
        return out


def simulate(config: SimulatorConfig | None = None) -> Dataset:
    """A synthetic :class:`Dataset` (see the module docstring for what is planted)."""
    return simulate_with_truth(config)[0]


def simulate_with_truth(config: SimulatorConfig | None = None) -> tuple[Dataset, SimulatedTruth]:
    """The synthetic dataset and its ground truth. Same config (seed included) -> identical frames."""
    import pandas as pd

    from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema

    cfg = config or SimulatorConfig()
    # Independent streams: the catalogue depends only on catalogue settings, not on n_users.
    cat_seq, ev_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    cat = _catalogue(cfg, np.random.default_rng(cat_seq))
    rng = np.random.default_rng(ev_seq)

    n_u, n_i, n_g = cfg.n_users, cfg.n_items, cfg.n_genres
    user_genre = rng.integers(0, n_g, size=n_u)
    user_device = rng.integers(0, len(DEVICES), size=n_u)
    lengths = np.maximum(rng.poisson(cfg.events_per_user, size=n_u), cfg.min_events_per_user)
    if not cfg.allow_repeats:
        lengths = np.minimum(lengths, n_i)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_ev = int(offsets[-1])
    ev_user = np.repeat(np.arange(n_u), lengths)  # (n_ev,)
    ev_pos = np.arange(n_ev) - offsets[ev_user]  # position within the user's sequence

    # Timestamps: per-user start + cumulative exponential gaps (>= 1 s, so strictly increasing);
    # a new session starts with probability 1 / session_length after a long gap.
    start = cfg.start_timestamp + rng.uniform(0, cfg.span_days * 86400.0, size=n_u)
    new_session = rng.random(n_ev) < 1.0 / cfg.session_length
    mean_gap = np.where(new_session, cfg.session_gap_days * 86400.0, cfg.event_gap_minutes * 60.0)
    gaps = np.floor(rng.exponential(1.0, size=n_ev) * mean_gap) + 1.0
    gaps[ev_pos == 0] = 0.0
    cum = np.cumsum(gaps)
    ts = np.floor(start[ev_user] + cum - (cum[offsets[:-1]])[ev_user])
    hour = ((ts // 3600) % 24).astype(np.int64)
    daypart = hour // 6  # index into DAYPARTS
    home = rng.random(n_ev) < cfg.device_loyalty
    device = np.where(home, user_device[ev_user], rng.integers(0, len(DEVICES), size=n_ev))
    day = (ts // 86400 - cfg.start_timestamp // 86400).astype(np.int64)  # calendar day (UTC)
    weather_by_day = rng.choice(len(WEATHERS), size=int(day.max()) + 1, p=_WEATHER_P)
    weather = weather_by_day[day]

    # Fresh-event genre distribution per (user genre, daypart, device) combination.
    logw = np.broadcast_to(np.log(cat.genre_mass), (n_g, len(DAYPARTS), len(DEVICES), n_g)).copy()
    ug, dp, dv = np.meshgrid(np.arange(n_g), np.arange(len(DAYPARTS)), np.arange(len(DEVICES)), indexing="ij")
    logw[ug, dp, dv, cat.context_genre[dp, dv]] += cfg.context_strength
    logw[ug, dp, dv, ug] += cfg.user_strength
    p = np.exp(logw - logw.max(axis=-1, keepdims=True))
    genre_cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1).reshape(-1, n_g)
    ev_combo = (user_genre[ev_user] * len(DAYPARTS) + daypart) * len(DEVICES) + device

    def draw_fresh(combo: np.ndarray) -> np.ndarray:
        # genre by inverse CDF, then item within genre by inverse CDF of popularity
        u = rng.random(len(combo))
        g = np.minimum((u[:, None] > genre_cdf[combo]).sum(axis=1), n_g - 1)
        v = cat.cum_lo[g] + rng.random(len(combo)) * cat.genre_mass[g]
        pos = np.searchsorted(cat.cum_sorted, v, side="right")
        pos = np.clip(pos, cat.genre_start[g], cat.genre_start[g + 1] - 1)
        return cat.sorted_items[pos]

    fresh = draw_fresh(ev_combo)
    wants_follow = rng.random(n_ev) < cfg.sequential_strength
    seq, followed = _resolve_sequences(
        cfg, rng, cat.successor, lengths, offsets, fresh, wants_follow, ev_combo, draw_fresh
    )
    ev_item = seq[ev_user, ev_pos]

    uw, iw = len(str(n_u - 1)), len(str(n_i - 1))
    user_ids = np.array([f"u{u:0{uw}d}" for u in range(n_u)], dtype=object)
    item_ids = [f"i{i:0{iw}d}" for i in range(n_i)]
    inter = pd.DataFrame(
        {
            Columns.USER: user_ids[ev_user],
            Columns.ITEM: np.asarray(item_ids, dtype=object)[ev_item],
            Columns.TIME: ts,
            Columns.EVENT: "view",
            "daypart": np.asarray(DAYPARTS, dtype=object)[daypart],
            "device": np.asarray(DEVICES, dtype=object)[device],
            "weather": np.asarray(WEATHERS, dtype=object)[weather],
        }
    )
    items = pd.DataFrame(
        {
            Columns.ITEM: item_ids,
            "title": cat.titles,
            "description": cat.descriptions,
            "genre": np.asarray(cat.genre_names, dtype=object)[cat.item_genre],
        }
    )
    users = pd.DataFrame({Columns.USER: user_ids, "home_device": np.asarray(DEVICES, dtype=object)[user_device]})
    schema = DatasetSchema(
        context=(ContextField(name="daypart"), ContextField(name="device"), ContextField(name="weather")),
        item_text_fields=("title", "description"),
        item_attribute_fields=("genre",),
        user_attribute_fields=("home_device",),
        has_timestamps=True,
    )
    data = Dataset.from_frames(
        inter,
        items=items,
        users=users,
        schema=schema,
        name="synthetic",
        notes=(
            (
                f"synthetic: seed={cfg.seed}, context_strength={cfg.context_strength}, "
                f"sequential_strength={cfg.sequential_strength}, text_strength={cfg.text_strength}"
            ),
        ),
    )
    # Rows were generated in (user id, time) order, which from_frames keeps; truth is row-aligned.
    if not (np.array_equal(data.item_idx, ev_item) and np.array_equal(data.user_idx, ev_user)):
        raise RuntimeError("simulator rows were reordered by Dataset.from_frames; truth would be misaligned")
    truth = SimulatedTruth(
        config=cfg,
        genre_names=cat.genre_names,
        genre_words=cat.genre_words,
        item_genre=cat.item_genre,
        item_popularity=cat.popularity,
        successor=cat.successor,
        user_genre=user_genre.astype(np.int64),
        user_device=user_device.astype(np.int64),
        context_genre=cat.context_genre,
        genre_mass=cat.genre_mass,
        followed_successor=followed[ev_user, ev_pos],
    )
    return data, truth


@dataclass
class _Catalogue:
    genre_names: tuple[str, ...]
    genre_words: tuple[tuple[str, ...], ...]
    item_genre: np.ndarray  # (n_items,)
    popularity: np.ndarray  # (n_items,) sums to 1
    successor: np.ndarray  # (n_items,)
    context_genre: np.ndarray  # (4, 3)
    genre_mass: np.ndarray  # (n_genres,) popularity mass per genre
    sorted_items: np.ndarray  # (n_items,) items grouped by genre
    genre_start: np.ndarray  # (n_genres + 1,) offsets into sorted_items
    cum_sorted: np.ndarray  # (n_items,) cumulative popularity in sorted_items order
    cum_lo: np.ndarray  # (n_genres,) cumulative popularity before each genre
    titles: list[str]
    descriptions: list[str]


def _catalogue(cfg: SimulatorConfig, rng: np.random.Generator) -> _Catalogue:
    n_i, n_g = cfg.n_items, cfg.n_genres
    item_genre = rng.permutation(np.arange(n_i) % n_g).astype(np.int64)  # every genre non-empty
    rank = rng.permutation(n_i) + 1
    w = 1.0 / rank.astype(np.float64) ** cfg.popularity_alpha
    popularity = w / w.sum()

    sorted_items = np.argsort(item_genre, kind="stable")
    genre_start = np.searchsorted(item_genre[sorted_items], np.arange(n_g + 1))
    cum_sorted = np.cumsum(popularity[sorted_items])
    genre_mass = np.bincount(item_genre, weights=popularity, minlength=n_g)
    cum_lo = np.concatenate([[0.0], np.cumsum(genre_mass)])[:-1]

    successor = np.empty(n_i, dtype=np.int64)
    for g in range(n_g):  # one random cycle through each genre: long chains, no 2-cycles
        members = rng.permutation(sorted_items[genre_start[g] : genre_start[g + 1]])
        successor[members] = np.roll(members, -1)

    # Each (daypart, device) cell prefers a genre; spread the cells over genres as evenly as possible.
    n_cells = len(DAYPARTS) * len(DEVICES)
    cells = rng.permutation(np.tile(rng.permutation(n_g), -(-n_cells // n_g))[:n_cells])
    context_genre = cells.reshape(len(DAYPARTS), len(DEVICES)).astype(np.int64)

    vocab = _pseudo_words(rng, n_g * cfg.words_per_genre, exclude=set(_FILLER))
    genre_words = tuple(tuple(vocab[g * cfg.words_per_genre : (g + 1) * cfg.words_per_genre]) for g in range(n_g))
    genre_names = tuple(f"genre_{g:0{len(str(n_g - 1))}d}" for g in range(n_g))

    n_words = cfg.title_words + cfg.description_words
    from_genre = rng.random((n_i, n_words)) < cfg.text_strength
    genre_pick = rng.integers(0, cfg.words_per_genre, size=(n_i, n_words)) + item_genre[:, None] * cfg.words_per_genre
    filler_pick = rng.integers(0, len(_FILLER), size=(n_i, n_words))
    genre_vocab, filler = np.asarray(vocab, dtype=object), np.asarray(_FILLER, dtype=object)
    words = np.where(from_genre, genre_vocab[genre_pick], filler[filler_pick])  # (n_items, n_words)
    titles = [" ".join(row[: cfg.title_words]).title() for row in words]
    descriptions = [(" ".join(row[cfg.title_words :]).capitalize() + ".") if cfg.description_words else "" for row in words]
    return _Catalogue(
        genre_names=genre_names,
        genre_words=genre_words,
        item_genre=item_genre,
        popularity=popularity,
        successor=successor,
        context_genre=context_genre,
        genre_mass=genre_mass,
        sorted_items=sorted_items.astype(np.int64),
        genre_start=genre_start,
        cum_sorted=cum_sorted,
        cum_lo=cum_lo,
        titles=titles,
        descriptions=descriptions,
    )


def _pseudo_words(rng: np.random.Generator, n: int, *, exclude: set[str]) -> list[str]:
    """``n`` distinct pronounceable made-up words (so genre vocabularies never collide)."""
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(k))
        w += _CODAS[rng.integers(len(_CODAS))]
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _resolve_sequences(
    cfg: SimulatorConfig,
    rng: np.random.Generator,
    successor: np.ndarray,
    lengths: np.ndarray,
    offsets: np.ndarray,
    fresh: np.ndarray,
    wants_follow: np.ndarray,
    ev_combo: np.ndarray,
    draw_fresh: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Chain the successor effect step by step (vectorised over users); ``(n_users, L_max)`` items."""
    n_u = len(lengths)
    l_max = int(lengths.max())
    seq = np.full((n_u, l_max), -1, dtype=np.int64)
    followed = np.zeros((n_u, l_max), dtype=bool)
    for t in range(l_max):
        users = np.flatnonzero(lengths > t)
        ev = offsets[users] + t
        items = fresh[ev].copy()
        follow = np.zeros(len(users), dtype=bool)
        hist = seq[users, :t]  # (B, t) earlier items
        if t > 0:
            cand = successor[seq[users, t - 1]]
            follow = wants_follow[ev].copy()
            if not cfg.allow_repeats:
                follow &= ~(hist == cand[:, None]).any(axis=1)
            items[follow] = cand[follow]
        if not cfg.allow_repeats and t > 0:
            bad = ~follow & (hist == items[:, None]).any(axis=1)
            for _ in range(50):  # rejection sampling = the distribution restricted to unseen items
                if not bad.any():
                    break
                b = np.flatnonzero(bad)
                items[b] = draw_fresh(ev_combo[ev[b]])
                bad[b] = (hist[b] == items[b, None]).any(axis=1)
            for row in np.flatnonzero(bad):  # pathological leftovers: a uniform unseen item
                unseen = np.setdiff1d(np.arange(cfg.n_items), hist[row])
                items[row] = unseen[rng.integers(len(unseen))]
        seq[users, t] = items
        followed[users, t] = follow
    return seq, followed


# ------------------------------------------------------------------------------ raw files
RawTimestamps = Literal["unix_s", "unix_ms", "iso", "day-first", "month-first", "none"]
_RAW_TIME = {"iso": "%Y-%m-%dT%H:%M:%SZ", "day-first": "%d/%m/%Y %H:%M:%S", "month-first": "%m/%d/%Y %H:%M"}


def write_raw_log(
    data: Dataset,
    folder: str | Path,
    *,
    timestamps: RawTimestamps = "day-first",
    fmt: Literal["csv", "tsv", "jsonl", "parquet"] = "csv",
    null_token: str | None = "NULL",
    null_share: float = 0.3,
    items: bool = True,
    order: Literal["time", "item"] = "time",
    seed: int = 0,
) -> dict[str, Path]:
    """Write a simulated dataset as the files of a public-style log, for reader and ``data init`` tests.

    ``events.<fmt>``: ``userID, itemID, DateTime`` (in the ``timestamps`` style; absent for ``"none"``),
    ``rating`` (1-5), and the context ``daypart, device, weather``, with ``null_token`` in a
    ``null_share`` of the weather cells (as public context logs write missing values). ``order = "item"``
    lists each user's events sorted by item id, as some logs without timestamps do. ``items.<fmt>``:
    ``itemID, name, description, genre``. Returns ``{"events": path, "items": path}``.
    """
    import pandas as pd

    from ctxrec.data.dataset import Columns

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    inter = data.interactions
    ev = pd.DataFrame({"userID": inter[Columns.USER].to_numpy(), "itemID": inter[Columns.ITEM].to_numpy()})
    ts = inter[Columns.TIME].to_numpy()
    if timestamps == "unix_s":
        ev["DateTime"] = ts.astype(np.int64)
    elif timestamps == "unix_ms":
        ev["DateTime"] = (ts * 1000).astype(np.int64)
    elif timestamps != "none":
        ev["DateTime"] = pd.to_datetime(ts, unit="s", utc=True).strftime(_RAW_TIME[timestamps])
    ev["rating"] = rng.integers(1, 6, len(ev))
    for c in ("daypart", "device", "weather"):
        ev[c] = inter[c].to_numpy()
    if null_token is not None:
        ev.loc[rng.random(len(ev)) < null_share, "weather"] = null_token
    if order == "item":
        ev = ev.sort_values(["userID", "itemID"], kind="stable")
    paths = {"events": _write_table(ev, folder / f"events.{fmt}", fmt)}
    if items:
        it = data.items.reset_index()
        table = pd.DataFrame({"itemID": it[Columns.ITEM], "name": it["title"], "description": it["description"],
                              "genre": it["genre"]})
        paths["items"] = _write_table(table, folder / f"items.{fmt}", fmt)
    return paths


def _write_table(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    return path
