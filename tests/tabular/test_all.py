"""The chapter-1 tabular example, with only the import line changed, on a generated Adult-like CSV."""

import lamina.tabular.all as surface
from lamina.tabular.synth import adult_like

CHAPTER_1 = """
from lamina.tabular.all import *
path = untar_data(URLs.ADULT_SAMPLE)
dls = TabularDataLoaders.from_csv(path/'adult.csv', path=path, y_names="salary",
    cat_names = ['workclass', 'education', 'marital-status', 'occupation',
                 'relationship', 'race'],
    cont_names = ['age', 'fnlwgt', 'education-num'],
    procs = [Categorify, FillMissing, Normalize])
learn = tabular_learner(dls, metrics=accuracy)
learn.fit_one_cycle(3)
learn.show_results()
df = pd.read_csv(path/'adult.csv')
row, clas, probs = learn.predict(df.iloc[0])
"""


def test_chapter_1_runs_on_an_adult_like_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path))
    folder = tmp_path / "data" / "adult_sample"
    folder.mkdir(parents=True)
    adult_like(800, seed=1).to_csv(folder / "adult.csv", index=False)
    scope: dict = {}
    exec(compile(CHAPTER_1, "chapter_1", "exec"), scope)
    out = capsys.readouterr().out
    assert "accuracy" in out and "salary_pred" in out  # the epoch table and the results table were printed
    dls, learn = scope["dls"], scope["learn"]
    assert scope["path"] == folder and dls.vocab == ["<50k", ">=50k"] and dls.bs == 64
    assert dls.valid.n == 160 and dls.train.n == 640  # unseeded 20% split
    assert "Private" in list(dls.classes["workclass"])  # leading spaces stripped by from_csv
    assert len(learn.recorder.values) == 3 and learn.recorder.values[-1][2] > 0.7
    row, clas, probs = scope["row"], scope["clas"], scope["probs"]
    # the raw CSV row keeps its leading spaces (no skipinitialspace): its categories are still recognised
    raw = scope["df"].iloc[0]
    assert raw["education"].startswith(" ") and row["education"].iloc[0] == raw["education"].strip()
    assert row["workclass"].iloc[0] == (raw["workclass"].strip() if isinstance(raw["workclass"], str) else "#na#")
    assert row["salary"].iloc[0] == dls.vocab[int(clas)] and abs(probs.sum().item() - 1) < 1e-5


def test_surface_exports_the_chapter_names():
    for name in ("np", "pd", "torch", "nn", "F", "Path", "partial", "untar_data", "URLs", "accuracy", "Learner",
                 "TabularDataLoaders", "TabularPandas", "Categorify", "FillMissing", "Normalize", "FillStrategy",
                 "cont_cat_split", "tabular_learner", "TabularModel", "tabular_config", "get_emb_sz", "load_learner",
                 "CrossEntropyLossFlat", "MSELossFlat", "Adam", "SaveModelCallback"):
        assert name in surface.__all__ and hasattr(surface, name), name
    assert len(surface.__all__) == len(set(surface.__all__))
