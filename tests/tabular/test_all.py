"""The chapter-1 tabular example, with only the import line changed, on a generated Adult-like CSV."""

import warnings

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


def test_chapter_1_runs_on_an_adult_like_csv(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path))
    folder = tmp_path / "data" / "adult_sample"
    folder.mkdir(parents=True)
    adult_like(800, seed=1).to_csv(folder / "adult.csv", index=False)
    scope: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(CHAPTER_1, "chapter_1", "exec"), scope)
    # the raw CSV row (read without skipinitialspace) matches the vocabularies only once stripped: said once
    assert [w.filename for w in caught] == ["chapter_1"] and "'workclass'" in str(caught[0].message)
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
                 "CrossEntropyLossFlat", "MSELossFlat", "Adam", "SaveModelCallback", "RegressionBlock", "CategoryBlock",
                 "MultiCategoryBlock", "RandomSplitter", "IndexSplitter", "range_of", "ClassificationInterpretation",
                 "tensor"):
        assert name in surface.__all__ and hasattr(surface, name), name
    assert len(surface.__all__) == len(set(surface.__all__))


FASTAI_IDIOMS = """
from lamina.tabular.all import *
df = adult_like(300, seed=2)
splits = RandomSplitter(seed=0)(range_of(df))
to = TabularPandas(df, procs=[Categorify, FillMissing, Normalize], cat_names=['race'], cont_names=['age'],
                   y_names='hours-per-week', y_block=RegressionBlock(), splits=splits)
dls = to.dataloaders(bs=32, num_workers=0, device='cpu')
cls_dls = TabularDataLoaders.from_df(df, cat_names=['race'], cont_names=['age'], y_names='salary',
                                     y_block=CategoryBlock(), procs=[Categorify, Normalize], device='cpu',
                                     valid_idx=IndexSplitter(range(60))(range_of(df))[1], shuffle_train=True)
weights = tensor([0.5, 1.5])
"""


def test_fastai_idioms_run_from_the_star_import():
    scope: dict = {}
    exec(compile(FASTAI_IDIOMS, "idioms", "exec"), scope)
    assert scope["to"].n_train == 240 and scope["dls"].train.kinds[2] == "regression" and scope["dls"].n_out == 1
    assert scope["cls_dls"].vocab == ["<50k", ">=50k"] and scope["cls_dls"].valid.n == 60
    assert scope["weights"].tolist() == [0.5, 1.5] and surface.tensor.__module__ == "lamina.torch_core"
    assert surface.ClassificationInterpretation.__module__ == "lamina.interpret"
