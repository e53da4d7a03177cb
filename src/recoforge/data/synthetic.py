"""Synthetic datasets: the demo shop, a toy catalogue, a film catalogue, and (in
:mod:`~recoforge.data.powerlaw`) a power-law generator that scales to 5x10^7 events.

Every generator is deterministic under ``seed`` and returns a
:class:`~recoforge.data.dataset.Dataset` whose item vocabulary is the whole catalogue
(unrated items included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recoforge.data.dataset import Dataset, Sessions
from recoforge.data.features import build_features
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions
from recoforge.data.powerlaw import iter_scalable_chunks, scalable_interactions
from recoforge.errors import ConfigError

__all__ = ["CATEGORY_VOCABULARY", "category_demo", "film_catalogue", "iter_scalable_chunks",
           "scalable_interactions", "toy_catalogue"]

START_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400

# Per category: nouns, adjectives, product features, uses. Words are category-specific so
# that text features identify the category.
CATEGORY_VOCABULARY: dict[str, tuple[tuple[str, ...], ...]] = {
    "books": (
        ("novel", "cookbook", "biography", "atlas", "anthology", "journal", "thriller", "memoir"),
        ("illustrated", "hardcover", "paperback", "classic", "bestselling", "annotated",
         "collected", "pocket"),
        ("a gripping plot", "detailed maps", "vivid characters", "historical notes",
         "colour photographs", "large print", "an author interview", "a reading guide"),
        ("long evenings", "book clubs", "curious readers", "history lovers", "quiet weekends",
         "students")),
    "electronics": (
        ("headphones", "laptop", "tablet", "speaker", "smartwatch", "charger", "camera",
         "monitor"),
        ("wireless", "portable", "compact", "smart", "bluetooth", "rechargeable", "digital",
         "ultrathin"),
        ("noise cancelling", "long battery life", "fast charging", "a touch screen",
         "an hd display", "a usb-c port", "voice control", "water resistance"),
        ("commuting", "gaming", "the home office", "video calls", "travel", "streaming")),
    "outdoors": (
        ("tent", "backpack", "sleeping bag", "hiking boots", "lantern", "trekking poles",
         "hammock", "water filter"),
        ("waterproof", "lightweight", "rugged", "insulated", "breathable", "foldable",
         "durable", "ultralight"),
        ("ripstop nylon", "an aluminium frame", "padded straps", "storm flaps",
         "reflective trim", "quick-dry fabric", "ventilation mesh", "compression sacks"),
        ("camping trips", "mountain hikes", "backpacking", "trail running",
         "fishing weekends", "rainy forests")),
    "music": (
        ("guitar", "ukulele", "keyboard", "drum kit", "violin", "microphone", "amplifier",
         "turntable"),
        ("acoustic", "electric", "vintage", "handcrafted", "studio", "beginner",
         "professional", "tuned"),
        ("a maple neck", "steel strings", "weighted keys", "tube warmth", "a spruce top",
         "a built-in tuner", "a velvet case", "a phono preamp"),
        ("live gigs", "studio sessions", "practice", "songwriting", "jam nights",
         "vinyl collectors")),
    "kitchen": (
        ("skillet", "blender", "knife set", "kettle", "stand mixer", "dutch oven",
         "cutting board", "espresso machine"),
        ("nonstick", "stainless", "cast iron", "ceramic", "enamelled", "chef grade",
         "dishwasher safe", "heavy duty"),
        ("even heating", "sharp blades", "a pour spout", "temperature control",
         "a milk frother", "a removable base", "an ergonomic handle", "a glass lid"),
        ("family dinners", "baking", "meal prep", "weekend brunch", "home baristas",
         "slow cooking")),
    "garden": (
        ("trowel", "watering can", "planter", "seed kit", "pruning shears", "hose reel",
         "compost bin", "bird feeder"),
        ("galvanised", "terracotta", "organic", "heirloom", "self-watering", "weatherproof",
         "sturdy", "recycled"),
        ("drainage holes", "bypass blades", "a rustproof coating", "a soft grip",
         "a seasonal planting guide", "a drip tray", "tool-free assembly", "a squirrel guard"),
        ("vegetable beds", "balcony gardens", "herb growing", "spring planting",
         "flower borders", "backyard wildlife")),
    "fitness": (
        ("yoga mat", "dumbbells", "kettlebell", "resistance bands", "jump rope", "foam roller",
         "exercise bike", "pull-up bar"),
        ("adjustable", "non-slip", "cushioned", "ergonomic", "weighted", "foldaway", "padded",
         "sweatproof"),
        ("a textured grip", "a digital display", "quick-lock collars", "a carry strap",
         "magnetic resistance", "a heart rate sensor", "a door mount", "dense foam"),
        ("home workouts", "strength training", "stretching", "cardio", "recovery days",
         "morning routines")),
    "beauty": (
        ("face serum", "lipstick", "shampoo", "moisturiser", "perfume", "hair dryer",
         "nail polish", "sunscreen"),
        ("hydrating", "vegan", "fragrance-free", "matte", "nourishing", "gentle",
         "long-lasting", "mineral"),
        ("hyaluronic acid", "shea butter", "vitamin c", "argan oil", "spf protection",
         "ionic technology", "floral notes", "a quick-dry formula"),
        ("daily skincare", "evenings out", "sensitive skin", "summer days", "a salon finish",
         "dry hair")),
}
FILM_GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller", "Horror", "Sci-Fi",
               "Animation", "Documentary")
_FILM_ADJECTIVES = ("Silent", "Last", "Broken", "Golden", "Hidden", "Midnight", "Crimson",
                    "Lost", "Frozen", "Electric", "Distant", "Wild", "Secret", "Burning",
                    "Quiet", "Iron", "Paper", "Velvet", "Hollow", "Bright")
_FILM_NOUNS = ("Harbour", "Kingdom", "Promise", "Signal", "Garden", "Frontier", "Memory",
               "Circus", "Orbit", "Letter", "Empire", "Island", "Witness", "Summer", "Machine",
               "Station", "Crown", "River", "Mirror", "Voyage")


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(4, len(str(n)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(1, n + 1)])


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _product_catalogue(n_items: int, categories: list[str], rng: np.random.Generator
                       ) -> pd.DataFrame:
    """Items spread evenly over categories, each with a readable title and description."""
    item_category = rng.permutation(np.arange(n_items) % len(categories))
    rows = []
    counters = dict.fromkeys(categories, 0)
    for cat_code in item_category:
        category = categories[cat_code]
        nouns, adjectives, feats, uses = CATEGORY_VOCABULARY[category]
        k = counters[category]
        counters[category] += 1
        adjective, noun = adjectives[rng.integers(len(adjectives))], nouns[rng.integers(8)]
        feat = rng.choice(len(feats), size=2, replace=False)
        use = rng.choice(len(uses), size=2, replace=False)
        edition = f" {k // 16 + 1}" if k >= 16 else ""
        rows.append((f"{adjective.title()} {noun.title()}{edition}", category,
                     f"{adjective.capitalize()} {noun} with {feats[feat[0]]} and "
                     f"{feats[feat[1]]}. Ideal for {uses[use[0]]} and {uses[use[1]]}."))
    info = pd.DataFrame(rows, columns=["title", "category", "description"],
                        index=pd.Index(_ids("i", n_items), name="item"))
    return info


def _demo_ratings(n_users: int, item_category: np.ndarray, preferred: np.ndarray,
                  ratings_per_user: tuple[int, int], rng: np.random.Generator
                  ) -> pd.DataFrame:
    """~70% of each user's ratings from the preferred category (N(4.2, 0.6)), the rest
    elsewhere (N(2.8, 0.6)); clipped to [1, 5], rounded to 0.1."""
    n_items = len(item_category)
    appeal = rng.lognormal(0.0, 0.5, size=n_items)  # mild popularity differences
    low, high = ratings_per_user
    users, items, ratings = [], [], []
    for user in range(n_users):
        n_ratings = min(int(rng.integers(low, high + 1)), n_items)
        in_pref = item_category == preferred[user]
        pools = (np.flatnonzero(in_pref), np.flatnonzero(~in_pref))
        n_pref = min(int(rng.binomial(n_ratings, 0.7)), len(pools[0]))
        n_other = min(n_ratings - n_pref, len(pools[1]))
        for pool, count, mean in ((pools[0], n_pref, 4.2), (pools[1], n_other, 2.8)):
            if count == 0:
                continue
            weights = appeal[pool] / appeal[pool].sum()
            picked = rng.choice(pool, size=count, replace=False, p=weights)
            users.append(np.full(count, user))
            items.append(picked)
            ratings.append(np.round(np.clip(rng.normal(mean, 0.6, count), 1.0, 5.0), 1))
    frame = pd.DataFrame({"u": np.concatenate(users), "i": np.concatenate(items),
                          "rating": np.concatenate(ratings)})
    frame["timestamp"] = START_EPOCH + rng.integers(0, 180 * DAY, size=len(frame))
    return frame


def _demo_sessions(preferred: np.ndarray, item_category: np.ndarray, sessions_per_user: int,
                   rng: np.random.Generator) -> Sessions:
    """Ordered view sessions of 3-8 items from each user's preferred category."""
    session_ids, items, users, stamps = [], [], [], []
    number = 0
    for user, category in enumerate(preferred):
        pool = np.flatnonzero(item_category == category)
        for _ in range(sessions_per_user):
            number += 1
            length = min(int(rng.integers(3, 9)), len(pool))
            viewed = rng.choice(pool, size=length, replace=False)
            start = START_EPOCH + int(rng.integers(0, 180 * DAY))
            session_ids += [f"s{number:06d}"] * length
            items.append(viewed)
            users.append(np.full(length, user))
            stamps.append(start + np.cumsum(rng.integers(20, 300, size=length)))
    if not items:
        return Sessions(np.array([], dtype=str), np.array([], dtype=np.int32),
                        np.array([], dtype=np.int32), np.array([], dtype=np.int64))
    return Sessions(session_ids=np.array(session_ids),
                    items=np.concatenate(items).astype(np.int32),
                    users=np.concatenate(users).astype(np.int32),
                    timestamps=np.concatenate(stamps).astype(np.int64))


def category_demo(n_users: int = 300, n_items: int = 200, n_categories: int = 5,
                  ratings_per_user: tuple[int, int] = (15, 40), sessions_per_user: int = 2,
                  seed: int = 0) -> Dataset:
    """A small shop where each user prefers one product category (the ``recoforge demo`` data).

    Items belong to one of ``n_categories`` categories (books, electronics, outdoors, music,
    kitchen, garden, fitness, beauty) and carry a title and a description written from
    that category's vocabulary. Each user prefers one category: about 70% of their
    ratings fall in it, drawn from N(4.2, 0.6), the rest elsewhere from N(2.8, 0.6), all
    clipped to [1, 5] and rounded to 0.1. Each user also has ``sessions_per_user`` ordered
    view sessions of 3-8 items of the preferred category.

    Returns
    -------
    Dataset
        Explicit ratings with timestamps (2024, 180 days); ``sessions``; ``item_info``
        (title, category, description) and item features (TF-IDF of the description plus
        one-hot category); ``user_info`` with ``preferred_category``. Ids are ``"u0001"``
        and ``"i0001"`` style strings.
    """
    _check_positive(n_users=n_users, n_items=n_items, n_categories=n_categories)
    if n_categories > len(CATEGORY_VOCABULARY):
        raise ConfigError(f"n_categories must be at most {len(CATEGORY_VOCABULARY)}, "
                          f"got {n_categories}")
    if n_items < n_categories:
        raise ConfigError(f"n_items ({n_items}) must be at least n_categories ({n_categories})")
    low, high = ratings_per_user
    if not 1 <= low <= high:
        raise ConfigError(f"ratings_per_user must be (low, high) with 1 <= low <= high, "
                          f"got {ratings_per_user!r}")
    if sessions_per_user < 0:
        raise ConfigError(f"sessions_per_user must be >= 0, got {sessions_per_user}")
    rng = np.random.default_rng(seed)
    categories = list(CATEGORY_VOCABULARY)[:n_categories]
    item_info = _product_catalogue(n_items, categories, rng)
    item_category = item_info["category"].map({c: k for k, c in enumerate(categories)})
    item_category = item_category.to_numpy(dtype=np.int64)
    preferred = rng.integers(0, n_categories, size=n_users)
    ratings = _demo_ratings(n_users, item_category, preferred, (low, high), rng)
    user_index = IdIndex(_ids("u", n_users), name="user")
    item_index = IdIndex(item_info.index.to_numpy(), name="item")
    order = np.lexsort((ratings["i"].to_numpy(), ratings["u"].to_numpy()))
    interactions = Interactions(
        users=ratings["u"].to_numpy(np.int32)[order], items=ratings["i"].to_numpy(np.int32)[order],
        values=ratings["rating"].to_numpy(np.float32)[order],
        timestamps=ratings["timestamp"].to_numpy(np.int64)[order],
        user_index=user_index, item_index=item_index, kind="explicit")
    user_info = pd.DataFrame({"preferred_category": np.array(categories)[preferred]},
                             index=pd.Index(user_index.ids, name="user"))
    return Dataset(
        interactions,
        item_features=build_features(item_info, item_index, text=["description"],
                                     categorical=["category"]),
        sessions=_demo_sessions(preferred, item_category, sessions_per_user, rng),
        item_info=item_info, user_info=user_info, name="category-demo")


_TOY_ITEMS = (
    ("kindle", "Kindle", "Electronics, Tablet",
     "E-reader with a glare-free display, adjustable warm light and weeks of battery life "
     "for reading books anywhere."),
    ("macbook", "Macbook", "Electronics, Laptop",
     "Thin and light laptop with a fast processor, a sharp retina display and all-day "
     "battery life."),
    ("brown-leather-shoes", "Brown Leather Shoes", "Fashion, Shoes",
     "Handmade brown leather shoes with a cushioned sole and a classic lace-up style for "
     "the office or an evening out."),
    ("samsung-qled-tv-75", "Samsung 75-Inch QLED TV", "Electronics, TV",
     "Large 75-inch QLED smart TV with 4K resolution, quantum dot colour and HDR for films "
     "and sports."),
    ("lg-qled-tv-60", "LG 60-Inch QLED TV", "Electronics, TV",
     "Compact 60-inch QLED smart TV with 4K resolution, vivid colour and built-in "
     "streaming apps."),
)
_TOY_PURCHASES = (("alice", "kindle"), ("alice", "macbook"), ("alice", "samsung-qled-tv-75"),
                  ("bob", "macbook"), ("bob", "lg-qled-tv-60"), ("carol", "brown-leather-shoes"),
                  ("carol", "kindle"), ("dave", "samsung-qled-tv-75"),
                  ("dave", "brown-leather-shoes"), ("erin", "kindle"))


def toy_catalogue() -> Dataset:
    """Five products and ten purchases: the classic content-based teaching example.

    Items: Kindle; Macbook; Brown Leather Shoes; Samsung 75-Inch QLED TV; LG 60-Inch
    QLED TV, with genre strings (``"Electronics, TV"``) and descriptions. Purchases are
    implicit events (value 1) by five users, one day apart.

    Returns
    -------
    Dataset
        ``item_info`` (title, genres, description); item features from the genres
        (multi-label, ``genres:electronics``) and TF-IDF of the descriptions.
    """
    item_info = pd.DataFrame([row[1:] for row in _TOY_ITEMS],
                             columns=["title", "genres", "description"],
                             index=pd.Index([row[0] for row in _TOY_ITEMS], name="item"))
    purchases = pd.DataFrame(_TOY_PURCHASES, columns=["user", "item"])
    purchases["timestamp"] = START_EPOCH + DAY * np.arange(len(purchases))
    item_index = IdIndex(item_info.index.to_numpy(), name="item")
    interactions = Interactions.from_frame(purchases, timestamp_col="timestamp",
                                           kind="implicit", item_index=item_index,
                                           source="toy_catalogue")
    features = build_features(item_info, item_index, multilabel={"genres": r","},
                              text=["description"])
    return Dataset(interactions, item_features=features, item_info=item_info,
                   name="toy-catalogue")


def film_catalogue(n_users: int = 10_000, n_items: int = 1_000, seed: int = 0) -> Dataset:
    """Films with one or two of nine genres, and 3-5 explicit ratings (1-5) per user.

    Each user has a favourite genre; a film in it is rated from N(4, 1), any other from
    N(3, 1), rounded and clipped to 1..5. Films are picked with mildly skewed (log-normal)
    popularity, without repeats per user.

    Returns
    -------
    Dataset
        Explicit integer ratings (no timestamps); ``item_info`` (title, genres); item
        features from the genres (``genres:comedy``); ``user_info`` with
        ``favourite_genre``.
    """
    _check_positive(n_users=n_users, n_items=n_items)
    if n_items < 5:
        raise ConfigError(f"n_items must be at least 5 (each user rates up to 5 films), "
                          f"got {n_items}")
    rng = np.random.default_rng(seed)
    n_genres = len(FILM_GENRES)
    first = rng.integers(0, n_genres, size=n_items)
    second = np.where(rng.random(n_items) < 0.4,
                      (first + rng.integers(1, n_genres, size=n_items)) % n_genres, -1)
    genres = np.array(FILM_GENRES)
    genre_strings = [genres[a] if b < 0 else f"{genres[a]}|{genres[b]}"
                     for a, b in zip(first, second, strict=True)]
    titles = [f"The {_FILM_ADJECTIVES[a]} {_FILM_NOUNS[b]} ({y})" for a, b, y in zip(
        rng.integers(0, 20, n_items), rng.integers(0, 20, n_items),
        rng.integers(1970, 2024, n_items), strict=True)]
    item_index = IdIndex(_ids("f", n_items), name="item")
    item_info = pd.DataFrame({"title": titles, "genres": genre_strings},
                             index=pd.Index(item_index.ids, name="item"))
    favourite = rng.integers(0, n_genres, size=n_users)
    counts = rng.integers(3, 6, size=n_users)
    weights = rng.lognormal(0.0, 0.7, size=n_items)
    weights /= weights.sum()
    items = np.concatenate([np.sort(rng.choice(n_items, size=k, replace=False, p=weights))
                            for k in counts])
    users = np.repeat(np.arange(n_users), counts)
    liked = (first[items] == favourite[users]) | (second[items] == favourite[users])
    ratings = np.clip(np.rint(rng.normal(np.where(liked, 4.0, 3.0), 1.0)), 1, 5)
    user_index = IdIndex(_ids("u", n_users), name="user")
    interactions = Interactions(users=users.astype(np.int32), items=items.astype(np.int32),
                                values=ratings.astype(np.float32), user_index=user_index,
                                item_index=item_index, kind="explicit")
    user_info = pd.DataFrame({"favourite_genre": genres[favourite]},
                             index=pd.Index(user_index.ids, name="user"))
    return Dataset(interactions,
                   item_features=build_features(item_info, item_index,
                                                multilabel={"genres": r"\|"}),
                   item_info=item_info, user_info=user_info, name="film-catalogue")
