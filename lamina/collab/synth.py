"""Planted low-rank ratings: a small MovieLens-shaped table whose structure a collab model can recover.

Each user and item gets ``n_factors`` random factors and a bias; a rating is their dot product plus
the biases plus a little noise, mapped onto the 0.5–5 star scale in half stars. A model with enough
factors can fit it well, so tests can check that training really learns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["synth_ratings"]


def synth_ratings(n_users: int = 50, n_items: int = 40, n_factors: int = 3, n: int = 2000, seed: int = 0,
                  noise: float = 0.1) -> pd.DataFrame:
    """A ratings table with planted low-rank structure.

    Example:
        >>> ratings = synth_ratings(n=500); list(ratings.columns)
        ['userId', 'movieId', 'rating', 'timestamp']

    Args:
        n_users, n_items: how many distinct users (ids 1..n_users) and items (ids 101..100+n_items).
        n_factors: rank of the planted structure.
        n: number of ratings; at most ``n_users * n_items`` (each pair is rated at most once).
        seed: the random seed (the table is a function of the arguments).
        noise: standard deviation of the noise added before rounding, in stars.

    Returns:
        a DataFrame with columns ``userId``, ``movieId``, ``rating`` (float, half stars in [0.5, 5]) and
        ``timestamp`` (int).

    Raises:
        ValueError: when ``n`` exceeds the number of distinct pairs.
    """
    if not 0 < n <= n_users * n_items:
        raise ValueError(f"`n` must be between 1 and n_users * n_items = {n_users * n_items}; received: n={n}")
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, n_factors)), rng.normal(size=(n_items, n_factors))
    user_bias, item_bias = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    u, i = pairs // n_items, pairs % n_items
    score = (users[u] * items[i]).sum(1) / np.sqrt(n_factors) + user_bias[u] + item_bias[i]
    score = score + rng.normal(0, noise, n)
    rating = np.clip(np.round((3 + score) * 2) / 2, 0.5, 5.0)
    return pd.DataFrame({"userId": u + 1, "movieId": i + 101, "rating": rating.astype(float),
                         "timestamp": rng.integers(1_000_000_000, 1_500_000_000, n)})
