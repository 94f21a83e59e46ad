"""tabular_learner / TabularLearner: sizes, training, predict (classification and regression), batch prediction,
show_results, and export → load in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lamina.export import ExportError, load_learner
from lamina.metrics import accuracy
from lamina.models.layers import emb_sz_rule
from lamina.models.tabular import TabularModel, tabular_config
from lamina.tabular.data import TabularDataLoaders
from lamina.tabular.learner import TabularLearner, TabularRow, get_emb_sz, tabular_learner
from lamina.tabular.procs import Categorify, FillMissing, Normalize

CATS = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONTS = ["age", "fnlwgt", "education-num"]


@pytest.fixture
def dls(adult_df):
    return TabularDataLoaders.from_df(adult_df, cat_names=CATS, cont_names=CONTS, y_names="salary",
                                      procs=[Categorify, FillMissing, Normalize], device="cpu", seed=0)


@pytest.fixture
def trained(dls, one_thread):
    learn = tabular_learner(dls, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(4, 1e-2)
    return learn


def test_embedding_sizes_follow_the_rule_with_overrides(dls):
    sizes = get_emb_sz(dls)
    assert [n for n, _ in sizes] == [len(dls.classes[c]) for c in dls.cat_names]  # cardinality includes #na#
    assert [w for _, w in sizes] == [emb_sz_rule(len(dls.classes[c])) for c in dls.cat_names]
    assert emb_sz_rule(10) == 6 and emb_sz_rule(3) == 3
    assert get_emb_sz(dls, {"race": 10})[CATS.index("race")] == (len(dls.classes["race"]), 10)
    with pytest.raises(ValueError, match=r"not categorical inputs: \['age'\]"):
        get_emb_sz(dls, {"age": 3})


def test_tabular_learner_builds_the_model_and_its_json_description(dls):
    learn = tabular_learner(dls, emb_szs={"race": 7}, config=tabular_config(ps=0.1), metrics=accuracy)
    assert isinstance(learn, TabularLearner) and isinstance(learn.model, TabularModel)
    assert [block[0].out_features for block in learn.model.layers[:-1]] == [200, 100]
    assert learn.model.layers[-1][0].out_features == 2 and learn.model.embeds[CATS.index("race")].embedding_dim == 7
    cfg = json.loads(json.dumps(learn.model_config))
    assert cfg["factory"] == "TabularModel" and cfg["kwargs"]["ps"] == 0.1
    rebuilt = TabularModel(**cfg["kwargs"])
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in learn.model.parameters()]
    small = tabular_learner(dls, layers=[16], n_out=3)
    assert small.model.layers[-1][0].out_features == 3 and len(small.model.layers) == 2


def test_loss_falls_and_the_rule_is_learned(trained):
    values = trained.recorder.values
    assert values[-1][1] < values[0][1] and trained.recorder.losses[-1] < trained.recorder.losses[0]
    assert values[-1][2] > 0.8  # accuracy on the validation rows


def test_predict_one_row_classification(trained, adult_df):
    row, clas, probs = trained.predict(adult_df.iloc[0])
    assert isinstance(row, TabularRow) and len(row) == 1 and hasattr(row, "show")
    assert list(row.columns) == trained.dls.cat_names + CONTS + ["salary"]
    assert row["salary"].iloc[0] == trained.dls.vocab[int(clas)]
    assert row["age"].iloc[0] == pytest.approx(adult_df["age"].iloc[0], abs=1e-3)
    assert clas.dtype == torch.int64 and clas.ndim == 0 and probs.shape == (2,)
    assert probs.sum().item() == pytest.approx(1.0) and int(clas) == int(probs.argmax())
    preds, targs = trained.get_preds(dl=trained.dls.test_dl(adult_df.iloc[:5]))
    assert torch.allclose(preds[0], probs, atol=1e-6) and targs.shape == (5,)
    as_dict = trained.predict(adult_df.iloc[0].to_dict())
    assert torch.allclose(as_dict[2], probs)
    with pytest.raises(ValueError, match="predict takes one row; received 2 rows"):
        trained.predict(adult_df.iloc[:2])


def test_predict_df_and_show_results(trained, adult_df, capsys):
    out = trained.predict_df(adult_df.iloc[:30])
    assert list(out.columns[-3:]) == ["salary_pred", "salary_prob_<50k", "salary_prob_>=50k"]
    assert (out.index == adult_df.index[:30]).all() and set(out["salary_pred"]) <= {"<50k", ">=50k"}
    preds, _ = trained.get_preds(dl=trained.dls.test_dl(adult_df.iloc[:30]))
    assert np.allclose(out["salary_prob_>=50k"], preds[:, 1].numpy(), atol=1e-6)
    capsys.readouterr()
    assert trained.show_results(max_n=5, shuffle=False) is None  # shown, not returned (as fastai's show functions)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[-2:] == ["salary", "salary_pred"] and len(lines) == 6
    first = trained._results_frame(trained.dls.valid, 5, shuffle=False)
    valid = trained.dls.valid.tensors
    assert first["salary"].tolist() == [trained.dls.vocab[int(i)] for i in valid[2][:5]]
    trained.show_results()
    assert len(capsys.readouterr().out.strip().splitlines()) == 10  # fastai's default max_n=9, plus the header
    torch.manual_seed(1)
    picked = [trained._results_frame(trained.dls.valid, 5, shuffle=True)["age"].tolist() for _ in range(2)]
    assert picked[0] != picked[1] and picked[0] != first["age"].tolist()  # random rows each call
    row = trained.predict(adult_df.iloc[0])[0]
    assert row.show() is None and "salary" in capsys.readouterr().out


@pytest.mark.usefixtures("one_thread")
def test_predict_regression(adult_df):
    dls = TabularDataLoaders.from_df(adult_df, cat_names=CATS, cont_names=["age", "education-num"],
                                     y_names="hours-per-week", procs=[Categorify, FillMissing, Normalize],
                                     device="cpu", seed=0)
    learn = tabular_learner(dls, layers=[32], y_range=(15, 65))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-2)
    row, value, same = learn.predict(adult_df.iloc[1])
    assert value.shape == (1,) and torch.equal(value, same) and 15 < value.item() < 65
    assert row["hours-per-week"].iloc[0] == pytest.approx(value.item(), rel=1e-5)
    assert list(learn.predict_df(adult_df.iloc[:3]).columns[-1:]) == ["hours-per-week_pred"]


def test_export_then_predict_raw_rows_in_a_fresh_process(trained, adult_df, tmp_path):
    rows = adult_df.iloc[:6]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    expected = trained.predict_df(rows)["salary_prob_>=50k"].tolist()
    one = trained.predict(rows.iloc[2])[2][1].item()
    trained.export(tmp_path / "adult.pkl")
    code = f"""
import json, sys
import pandas as pd
from lamina.tabular.all import load_learner
learn = load_learner({str(tmp_path / 'adult.pkl')!r})
rows = pd.read_csv({str(tmp_path / 'rows.csv')!r})
row, clas, probs = learn.predict(rows.iloc[2])
print(json.dumps({{"cls": type(learn).__name__, "probs": learn.predict_df(rows)["salary_prob_>=50k"].tolist(),
                  "one": probs[1].item(), "label": row["salary"].iloc[0], "vocab": learn.dls.vocab,
                  "mpl": "matplotlib" in sys.modules}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["cls"] == "TabularLearner" and got["vocab"] == ["<50k", ">=50k"]
    assert np.allclose(got["probs"], expected, atol=1e-5) and got["one"] == pytest.approx(one, abs=1e-5)
    assert got["label"] in ("<50k", ">=50k")
    assert got["mpl"] is False  # the star-import surface does not import matplotlib


def test_activation_settings_are_kept_in_the_export_description(dls, tmp_path):
    learn = tabular_learner(dls, layers=[8], config=tabular_config(act_cls=nn.LeakyReLU(0.5)))
    loaded = load_learner(learn.export(tmp_path / "leaky.pkl"))
    assert loaded.model.layers[0][1].negative_slope == 0.5
    assert learn.model.layers[0][1].negative_slope == 0.5
    act = json.loads(json.dumps(learn.model_config))["kwargs"]["act_cls"]
    assert act == {"name": "LeakyReLU", "kwargs": {"negative_slope": 0.5, "inplace": False}}
    rebuilt = TabularModel(**learn.model_config["kwargs"])
    assert rebuilt.layers[0][1].negative_slope == 0.5
    swish = tabular_learner(dls, layers=[8], config=tabular_config(act_cls=nn.Hardswish()))
    assert swish.model_config["kwargs"]["act_cls"]["name"] == "Hardswish"


def test_export_refusals_name_the_cause(dls, adult_df, tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    learn = tabular_learner(dls, layers=[8], config=tabular_config(act_cls=Custom()))
    with pytest.raises(ExportError, match=r"activation Custom\(\) .*cannot be described for export"):
        learn.export(tmp_path / "x.pkl")
    dated = adult_df.assign(seen=pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(adult_df)) % 3, "D"))
    dates = TabularDataLoaders.from_df(dated, cat_names=["race", "seen"], cont_names=["age"], y_names="salary",
                                       procs=[Categorify, Normalize], device="cpu", seed=0)
    with pytest.raises(ExportError, match=r"Column 'seen' holds values an export cannot store as JSON, e.g. "
                                          r".*\(datetime\).*astype\(str\)"):
        tabular_learner(dates, layers=[8]).export(tmp_path / "dates.pkl")
    assert not (tmp_path / "dates.pkl").exists()
    as_text = TabularDataLoaders.from_df(dated.astype({"seen": str}), cat_names=["race", "seen"], cont_names=["age"],
                                         y_names="salary", procs=[Categorify, Normalize], device="cpu", seed=0)
    assert tabular_learner(as_text, layers=[8]).export(tmp_path / "text.pkl").exists()
