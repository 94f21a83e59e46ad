"""collab_learner and CollabLearner: the chapter-1 example, learning planted structure, prediction, reading the
model, and export/load in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import lamina.collab
from lamina.collab import CollabDataLoaders, collab_learner, synth_ratings
from lamina.export import ExportError
from lamina.models.collab import EmbeddingDotBias, EmbeddingNN

CHAPTER_1 = """
from lamina.collab import *
path = untar_data(URLs.ML_SAMPLE)
dls = CollabDataLoaders.from_csv(path/'ratings.csv')
learn = collab_learner(dls, y_range=(0.5, 5.5))
learn.fine_tune(10)
learn.show_results()
"""


@pytest.fixture(scope="module")
def ratings():
    return synth_ratings(n_users=40, n_items=30, n_factors=3, n=1200, seed=0)


def quiet(learn):
    learn.logger = lambda *a: None
    learn.remove_cb(learn.progress)
    return learn


@pytest.fixture(scope="module")
def trained(ratings):
    """A dot-product learner fitted on planted rank-3 data (shared: the tests below only read it)."""
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=64, device="cpu")
    learn = quiet(collab_learner(dls, n_factors=3, y_range=(0, 5.5)))
    learn.fit_one_cycle(8, 0.1)
    return learn


def test_chapter_one_runs_with_only_the_import_changed(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path))
    folder = tmp_path / "data" / "movie_lens_sample"
    folder.mkdir(parents=True)
    synth_ratings(n_users=30, n_items=25, n=600, seed=3).to_csv(folder / "ratings.csv", index=False)
    scope = {}
    exec(CHAPTER_1, scope)
    learn = scope["learn"]
    assert isinstance(learn.model, EmbeddingDotBias) and learn.model.y_range == (0.5, 5.5)
    assert len(learn.recorder.values) == 10  # the second fit of fine_tune: 10 epochs
    out = capsys.readouterr().out
    table = out[out.index("userId"):].strip().splitlines()  # show_results prints its table last
    assert table[0].split() == ["userId", "movieId", "rating", "rating_pred"] and len(table) == 10
    assert all(0.5 < float(line.split()[-1]) < 5.5 for line in table[1:])
    assert "train_loss" in out


def test_star_import_surface():
    names = set(lamina.collab.__all__)
    assert {"np", "pd", "torch", "nn", "F", "Path", "partial", "untar_data", "URLs", "Learner", "MSELossFlat",
            "Adam", "Callback", "rmse", "CollabDataLoaders", "collab_learner", "EmbeddingDotBias",
            "EmbeddingNN", "load_learner", "tabular_config", "TabularModel", "RegressionBlock", "CategoryBlock",
            "MultiCategoryBlock", "RandomSplitter", "IndexSplitter", "range_of", "ClassificationInterpretation",
            "tensor"} <= names
    assert all(hasattr(lamina.collab, n) for n in names) and len(names) == len(lamina.collab.__all__)


CHAPTER_8 = """
from lamina.collab import *
g = ratings.groupby('title')['rating'].count()
top_movies = g.sort_values(ascending=False).index.values[:10]
top_idxs = tensor([learn.dls.classes['title'].o2i[m] for m in top_movies])
movie_w = learn.model.weight(top_movies, is_item=True)
movie_bias = learn.model.bias(top_movies, is_item=True)
nn_learn = collab_learner(dls, use_nn=True, layers=[8], config=tabular_config(ps=[0.1]), y_range=(0, 5.5))
"""


def test_chapter_8_reading_of_the_model(ratings):
    titled = ratings.assign(title=ratings.movieId.map(lambda i: f"Film {i}"))[["userId", "title", "rating"]]
    dls = CollabDataLoaders.from_df(titled, seed=0, bs=64, device="cpu", num_workers=0)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5))
    scope = {"ratings": titled, "learn": learn, "dls": dls}
    exec(compile(CHAPTER_8, "chapter_8", "exec"), scope)
    assert scope["movie_w"].shape == (10, 4) and scope["movie_bias"].shape == (10,)
    torch.testing.assert_close(scope["movie_bias"], learn.model.i_bias.weight.detach()[scope["top_idxs"], 0])
    nn_model = scope["nn_learn"].model
    assert [m.p for m in nn_model.modules() if isinstance(m, torch.nn.Dropout)][1:] == [0.1]
    assert scope["nn_learn"].model_config["kwargs"]["act_cls"] == {"name": "ReLU", "kwargs": {"inplace": True}}


def test_neural_model_trains_and_exports_the_activation_it_was_given(ratings, tmp_path):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=64, device="cpu")
    slope = torch.nn.LeakyReLU(0.5)
    learn = quiet(collab_learner(dls, use_nn=True, layers=[8], config={"act_cls": slope}))
    assert learn.model.layers[0][1] is slope  # trains with the user's module, settings included
    cfg = json.loads(json.dumps(learn.model_config))
    assert cfg["kwargs"]["act_cls"] == {"name": "LeakyReLU", "kwargs": {"negative_slope": 0.5, "inplace": False}}
    assert EmbeddingNN(**cfg["kwargs"]).layers[0][1].negative_slope == 0.5

    class Custom(torch.nn.Module):
        def forward(self, x):
            return x.clamp(min=0)

    custom = collab_learner(dls, use_nn=True, layers=[8], config={"act_cls": Custom()})
    with pytest.raises(ExportError, match=r"activation Custom\(\) .*cannot be described for export"):
        custom.export(tmp_path / "custom.pkl")
    with pytest.raises(ValueError, match=r"`config` keys must be among .*\['n_factors'\]"):
        collab_learner(dls, use_nn=True, config={"n_factors": 3})
    dated = ratings.assign(movieId=pd.Timestamp("2020-01-01") + pd.to_timedelta(ratings.movieId, "D"))
    dated_learn = collab_learner(CollabDataLoaders.from_df(dated, seed=0, device="cpu"), n_factors=2)
    with pytest.raises(ExportError, match=r"Column 'movieId' holds ids an export cannot store as JSON.*astype\(str\)"):
        dated_learn.export(tmp_path / "dated.pkl")


def test_loss_falls_on_planted_low_rank_data(trained):
    first, last = trained.recorder.values[0][1], trained.recorder.values[-1][1]
    variance = float(trained.dls.valid.tensors[1].var())
    assert last < 0.5 * first and last < 0.35 * variance  # most of the variance is explained


def test_neural_model_learns_and_fine_tune_freezes_nothing(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=64, device="cpu")
    learn = quiet(collab_learner(dls, use_nn=True, layers=[16], y_range=(0, 5.5), config={"ps": [0.0]}))
    assert isinstance(learn.model, EmbeddingNN) and learn.model_config["factory"] == "EmbeddingNN"
    assert learn.model_config["kwargs"]["emb_szs"] == [[41, 13], [31, 11]]  # emb_sz_rule(41), emb_sz_rule(31)
    learn.fine_tune(3, 1e-2)
    assert len(learn.opt.param_lists) == 1 and all(p.requires_grad for p in learn.model.parameters())
    losses = [v[1] for v in learn.recorder.values]
    assert losses[-1] < losses[0]
    assert learn.item_pca([101, 102, 103], n_components=2).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown='bias' needs the dot-product model"):
        learn.predict_df([(1, 101)], unknown="bias")
    with pytest.raises(TypeError, match="top_items reads the item biases of the dot-product model"):
        learn.top_items()


def test_predict_one_pair_in_any_form(trained, ratings):
    row = ratings.iloc[0]
    rating, dec, pred = trained.predict((row.userId, row.movieId))
    assert isinstance(rating, float) and dec.shape == (1,) and rating == pytest.approx(pred.item())
    assert trained.predict({"userId": row.userId, "movieId": row.movieId})[0] == pytest.approx(rating)
    assert trained.predict(row)[0] == pytest.approx(rating)
    codes = trained.dls.test_dl([(row.userId, row.movieId)]).tensors[0]
    assert trained.model.eval()(codes).item() == pytest.approx(rating, abs=1e-6)
    with pytest.raises(TypeError, match="`item` must be a \\(user, item\\) tuple"):
        trained.predict("1,101")


def test_predict_df_and_unknown_ids(trained, ratings):
    pairs = ratings.iloc[:5][["userId", "movieId"]]
    out = trained.predict_df(pairs)
    assert list(out.columns) == ["userId", "movieId", "rating_pred"] and "rating_pred" not in pairs
    assert out.rating_pred.iloc[2] == pytest.approx(trained.predict(tuple(pairs.iloc[2]))[0], abs=1e-6)
    with pytest.raises(KeyError, match="column 'userId' were never seen in training: 777"):
        trained.predict((777, 101))
    model = trained.model
    by_bias = trained.predict_df([(777, 101), (1, 9999), (777, 9999)], unknown="bias").rating_pred
    squash = lambda v: (torch.sigmoid(torch.as_tensor(v)) * 5.5).item()  # noqa: E731
    assert by_bias[0] == pytest.approx(squash(model.bias([101]).item()), abs=1e-6)
    assert by_bias[1] == pytest.approx(squash(model.bias([1], is_item=False).item()), abs=1e-6)
    assert by_bias[2] == pytest.approx(2.75)
    as_na = trained.predict((777, 101), unknown="na")[0]
    codes = torch.tensor([[0, trained.dls.classes["movieId"].o2i[101]]])
    assert as_na == pytest.approx(model(codes).item(), abs=1e-6)


def test_show_results_table(trained, capsys):
    assert trained.show_results(max_n=4, shuffle=False) is None  # shown, not returned (as fastai's show functions)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["userId", "movieId", "rating", "rating_pred"] and len(lines) == 5
    valid = trained.dls.decode_codes(trained.dls.valid.tensors[0][:4])
    assert [int(line.split()[0]) for line in lines[1:]] == valid.userId.tolist()
    df = trained._results_frame(trained.dls.valid, 4, shuffle=False)
    assert np.allclose(df.rating, trained.dls.valid.tensors[1][:4].reshape(-1).numpy())
    trained.show_results()
    assert len(capsys.readouterr().out.strip().splitlines()) == 10  # max_n=9 random rows and the header


def test_top_and_bottom_items_follow_the_biases(trained):
    top, bottom = trained.top_items(3), trained.bottom_items(3)
    assert list(top.columns) == ["movieId", "bias"] and len(top) == 3
    all_bias = trained.model.bias(trained.dls.classes["movieId"][1:])
    assert top.bias.iloc[0] == pytest.approx(all_bias.max().item())
    assert bottom.bias.iloc[0] == pytest.approx(all_bias.min().item())
    assert top.bias.is_monotonic_decreasing and bottom.bias.is_monotonic_increasing
    assert "#na#" not in set(top.movieId) | set(bottom.movieId)
    torch.testing.assert_close(torch.tensor(top.bias.tolist()), trained.model.bias(top.movieId.tolist()))


def test_item_pca_and_its_plot(trained):
    items = trained.most_rated_items(20)
    counts = pd.Series(trained.dls.decode_codes(trained.dls.train.tensors[0]).movieId).value_counts()
    assert counts[items[0]] == counts.max()
    pca = trained.item_pca(items, n_components=3)
    assert pca.shape == (20, 3) and list(pca.index) == items
    variances = pca.var().to_numpy()
    assert variances[0] >= variances[1] >= variances[2]
    ax = trained.plot_item_pca(items, n_label=10, components=(0, 2)).axes[0]
    assert len(ax.texts) == 10 and {t.get_text() for t in ax.texts} == {str(i) for i in items[:10]}
    with pytest.raises(KeyError, match="never seen in training"):
        trained.item_pca([101, 5555])


def test_collab_learner_checks_its_data():
    from lamina.testing import synth_regression
    with pytest.raises(TypeError, match="`dls` must be CollabDataLoaders"):
        collab_learner(synth_regression())


def test_export_and_load_in_a_fresh_process(trained, ratings, tmp_path):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=64, device="cpu")
    nn_learn = quiet(collab_learner(dls, use_nn=True, layers=[8], y_range=(0, 5.5)))
    nn_learn.fit(1, 1e-2)
    pairs = ratings.iloc[:6][["userId", "movieId"]]
    paths = {"dot": str(trained.export(tmp_path / "dot.pkl")), "nn": str(nn_learn.export(tmp_path / "nn.pkl"))}
    expected = {"dot": trained.predict_df(pairs).rating_pred.tolist(),
                "nn": nn_learn.predict_df(pairs).rating_pred.tolist()}
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    code = f"""
import json, sys
import pandas as pd
from lamina.collab import *
assert "matplotlib" not in sys.modules, "importing lamina.collab must not import matplotlib"
pairs = pd.read_csv({str(tmp_path / 'pairs.csv')!r})
out = {{}}
for name, path in {paths!r}.items():
    learn = load_learner(path)
    out[name] = learn.predict_df(pairs).rating_pred.tolist()
    out[name + "_class"] = type(learn).__name__
learn = load_learner({paths['dot']!r})
out["bias"] = learn.model.bias([101]).tolist()
out["one"] = learn.predict(tuple(pairs.iloc[0]))[0]
print(json.dumps(out))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("dot", "nn"):
        assert np.allclose(got[name], expected[name], atol=1e-5)
        assert got[name + "_class"] == "CollabLearner"
    assert np.allclose(got["bias"], trained.model.bias([101]).tolist(), atol=1e-6)
    assert got["one"] == pytest.approx(expected["dot"][0], abs=1e-5)
