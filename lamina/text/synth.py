"""Tiny synthetic movie reviews: a labelled table and a folder of text files that a text model can learn from.

Positive reviews use words of one list, negative ones of another, in a fixed template with random picks, so a
classifier trained for a few epochs separates them and a language model finds the template's regularities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["synth_reviews", "synth_review_folder"]

_GOOD = ["great", "wonderful", "brilliant", "moving", "superb", "delightful", "excellent", "charming"]
_BAD = ["awful", "boring", "dreadful", "terrible", "dull", "clumsy", "painful", "lifeless"]
_NOUNS = ["movie", "film", "story", "plot", "acting", "cast", "ending", "score"]
_FILLER = ["the", "a", "this", "that", "really", "quite", "so", "very", "and", "was", "is", "it"]


def _review(rng: np.random.Generator, good: bool) -> str:
    words = _GOOD if good else _BAD
    sentences = []
    for _ in range(int(rng.integers(1, 4))):
        noun, adj = rng.choice(_NOUNS), rng.choice(words)
        filler = " ".join(rng.choice(_FILLER, size=int(rng.integers(0, 4))))
        sentences.append(f"The {noun} was {filler} {adj}{'!!!' if rng.random() < 0.2 else '.'}")
    return " ".join(sentences).replace("  ", " ")


def synth_reviews(n: int = 200, valid_pct: float = 0.25, seed: int = 0) -> pd.DataFrame:
    """A table like ``URLs.IMDB_SAMPLE``'s ``texts.csv``: columns ``label`` (``'negative'``/``'positive'``),
    ``text`` and ``is_valid``.

    Example:
        >>> df = synth_reviews(100); list(df.columns)
        ['label', 'text', 'is_valid']
    """
    rng = np.random.default_rng(seed)
    good = rng.random(n) < 0.5
    texts = [_review(rng, bool(g)) for g in good]
    return pd.DataFrame({"label": np.where(good, "positive", "negative"), "text": texts,
                         "is_valid": np.arange(n) >= int(n * (1 - valid_pct))})


def synth_review_folder(path: str | Path, n: int = 120, seed: int = 0, valid: str = "test",
                        unsup: int = 0) -> Path:
    """Write reviews as IMDB lays them out: ``path/train/{pos,neg}/*.txt``, ``path/<valid>/{pos,neg}/*.txt``
    (a quarter of them) and ``unsup`` unlabelled ones in ``path/unsup``. Returns ``path``."""
    path = Path(path)
    df = pd.concat([synth_reviews(n, seed=seed), synth_reviews(unsup, seed=seed + 1)], ignore_index=True)
    for i, row in df.iterrows():
        split = "unsup" if i >= n else (valid if row.is_valid else "train")
        folder = path / split if split == "unsup" else path / split / ("pos" if row.label == "positive" else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(row.text, encoding="utf8")
    return path
