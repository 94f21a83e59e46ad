"""`get_emb_sz` on tabular and collab data, and chapter 8's hand-written `CollabNN` sized by it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

CHAPTER_8 = """
from lamina.collab import *
dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64, seed=0)
embs = get_emb_sz(dls)

class CollabNN(Module):
    def __init__(self, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        self.user_factors = Embedding(*user_sz)
        self.item_factors = Embedding(*item_sz)
        self.layers = nn.Sequential(nn.Linear(user_sz[1] + item_sz[1], n_act), nn.ReLU(), nn.Linear(n_act, 1))
        self.y_range = SigmoidRange(*y_range)

    def forward(self, x):
        embs = self.user_factors(x[:, 0]), self.item_factors(x[:, 1])
        return self.y_range(self.layers(torch.cat(embs, dim=1)))

model = CollabNN(*embs)
learn = Learner(dls, model, loss_func=MSELossFlat())
learn.fit_one_cycle(3, 5e-3, wd=0.01)
"""


def test_chapter_8_collab_nn_sized_by_get_emb_sz(capsys):
    from lamina.collab.synth import synth_ratings
    ratings = synth_ratings(n_users=30, n_items=40, n=1000, seed=0)
    ratings["title"] = "movie " + ratings.pop("movieId").astype(str)
    ratings = ratings[["userId", "title", "rating"]]
    scope = {"ratings": ratings}
    exec(compile(CHAPTER_8, "chapter_8", "exec"), scope)
    dls, embs, learn = scope["dls"], scope["embs"], scope["learn"]
    n_users, n_titles = ratings.userId.nunique() + 1, ratings.title.nunique() + 1  # '#na#' counts
    assert dls.cat_names == ["userId", "title"]
    assert [n for n, _ in embs] == [n_users, n_titles]  # every id, also those rated only in validation rows
    assert embs[0][1] == int(min(600, round(1.6 * n_users**0.56)))
    values = [row[1] for row in learn.recorder.values]
    assert values[-1] < values[0]
    assert learn.model.item_factors.weight.shape == (n_titles, embs[1][1])


def test_get_emb_sz_overrides_and_errors():
    from lamina.collab import CollabDataLoaders, get_emb_sz
    from lamina.tabular.learner import get_emb_sz as tabular_get_emb_sz
    assert tabular_get_emb_sz is get_emb_sz  # one function, still importable from its old module
    ratings = pd.DataFrame({"u": ["a", "b", "c"] * 4, "i": [1, 2, 3, 4] * 3, "r": [1.0, 2.0, 3.0, 4.0] * 3})
    dls = CollabDataLoaders.from_df(ratings, seed=0, device="cpu")
    assert get_emb_sz(dls, {"i": 7}) == [(4, get_emb_sz(dls)[0][1]), (5, 7)]
    with pytest.raises(ValueError, match="not categorical inputs"):
        get_emb_sz(dls, {"r": 3})
    with pytest.raises(TypeError, match="needs tabular or collab data"):
        get_emb_sz(torch.zeros(2))
