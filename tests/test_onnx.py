"""learn.to_onnx: the model and its tensor preprocessing in one checked ONNX file, run by onnxruntime with the
same outputs as torch, for the image classifier, the U-Net, the tabular and the collab learners."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from lamina.export import load_learner
from lamina.learner import Learner
from lamina.tabular.preprocess import TabularProcessor
from lamina.testing import synth_classification, tiny_mlp

from . import tiny_apps


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apps")
    clf, files = tiny_apps.image_classifier(folder)
    aug, _ = tiny_apps.image_classifier(folder / "aug", augment=True)
    seg, seg_files = tiny_apps.segmenter(folder)
    tab, df = tiny_apps.tabular()
    col, ratings = tiny_apps.collab()
    return {"clf": (clf, files), "aug": (aug, files), "seg": (seg, seg_files), "tab": (tab, df.iloc[:7]),
            "col": (col, ratings.iloc[:7])}


def onnx_inputs(learn, items):
    """What a client feeds the graph for ``items``, and what torch predicts for them."""
    dl = learn.dls.test_dl(items, num_workers=0) if isinstance(items, list) else learn.dls.test_dl(items)
    with learn.no_bar():
        want = learn.get_preds(dl=dl)[0]
    if isinstance(items, list):  # images: the uint8 items as the item transforms leave them
        return {"image": torch.stack([dl.dataset[i][0] for i in range(len(items))]).numpy()}, want
    inputs = [t.numpy() for t in dl.tensors[:learn.dls.n_inp]]
    return (dict(zip(("cats", "conts"), inputs)) if len(inputs) == 2 else {"pairs": inputs[0]}), want


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("name", ["clf", "aug", "seg", "tab", "col"])
def test_onnxruntime_matches_torch(apps, name, tmp_path):
    learn, items = apps[name]
    items = items[:5] if isinstance(items, list) else items
    path = learn.to_onnx(tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    feed, want = onnx_inputs(learn, items)
    got, = onnxruntime.InferenceSession(str(path)).run(None, feed)  # batches of 5 and 7: the export traced 2
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_image_graph_takes_uint8_and_normalises_inside(apps, tmp_path):
    learn, _ = apps["aug"]
    meta = metadata(learn.to_onnx(tmp_path / "aug.onnx"))
    image = json.loads(meta["lamina.image"])
    assert image["size"] == [24, 24] and image["dtype"] == "uint8" and image["channels"] == 3
    assert image["in_graph"] == ["IntToFloatTensor", "AffineCoordTfm", "Normalize"]
    assert image["item_tfms"][0]["name"] == "Resize"
    assert json.loads(meta["lamina.inputs"]) == [{"name": "image", "dtype": "uint8", "shape": ["batch", 3, 24, 24]}]
    assert json.loads(meta["lamina.vocab"]) == [False, True]  # is_cat's labels
    assert json.loads(meta["lamina.output"])["name"] == "probs"


def test_tabular_metadata_is_enough_to_process_raw_rows(apps, tmp_path):
    learn, rows = apps["tab"]
    meta = metadata(learn.to_onnx(tmp_path / "tab.onnx"))
    table = json.loads(meta["lamina.tabular"])
    assert table["cat_names"] == ["workclass", "education", "education-num_na"]
    assert table["cont_names"] == ["age", "education-num"]
    processor = TabularProcessor.from_config(table["processor"])  # what a client rebuilds from the file alone
    cats, conts = processor.encode(rows, with_labels=False)
    got, = onnxruntime.InferenceSession(str(tmp_path / "tab.onnx")).run(None, {"cats": cats.numpy(),
                                                                               "conts": conts.numpy()})
    assert json.loads(meta["lamina.vocab"]) == list(learn.dls.vocab)
    np.testing.assert_allclose(got, learn.predict_df(rows)[[f"salary_prob_{c}" for c in learn.dls.vocab]].to_numpy(),
                               atol=1e-4)


def test_collab_metadata_maps_ids_to_codes(apps, tmp_path):
    learn, ratings = apps["col"]
    meta = json.loads(metadata(learn.to_onnx(tmp_path / "col.onnx"))["lamina.collab"])
    assert (meta["user_name"], meta["item_name"], meta["unknown_code"]) == ("userId", "movieId", 0)
    pairs = np.array([[meta["users"].index(u), meta["items"].index(i)]
                      for u, i in zip(ratings["userId"], ratings["movieId"])], dtype=np.int64)
    got, = onnxruntime.InferenceSession(str(tmp_path / "col.onnx")).run(None, {"pairs": pairs})
    np.testing.assert_allclose(got, learn.predict_df(ratings)["rating_pred"].to_numpy(), atol=1e-4)


def test_a_loaded_learner_exports_the_same_graph(apps, tmp_path):
    learn, files = apps["clf"]
    loaded = load_learner(learn.export(tmp_path / "clf.pkl"))
    loaded.path = tmp_path / "out"  # a relative name goes under learn.path, as for export
    path = loaded.to_onnx("clf.onnx")
    assert path == tmp_path / "out" / "clf.onnx" and path.exists()
    feed, want = onnx_inputs(learn, files[:3])
    got, = onnxruntime.InferenceSession(str(path)).run(None, feed)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_fixed_batch_when_asked(apps, tmp_path):
    learn, rows = apps["tab"]
    path = learn.to_onnx(tmp_path / "fixed.onnx", dynamic_batch=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3]
    assert json.loads(metadata(path)["lamina.inputs"])[0]["shape"] == [2, 3]
    feed, _ = onnx_inputs(learn, rows)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        onnxruntime.InferenceSession(str(path)).run(None, feed)


def test_plain_tensor_data_is_refused_with_the_way_out(tmp_path):
    learn = Learner(synth_classification(n=32), tiny_mlp(), path=tmp_path)
    with pytest.raises(ValueError, match="vision, tabular and collab .* torch.onnx.export on learn.model"):
        learn.to_onnx("x.onnx")
    assert not (tmp_path / "x.onnx").exists()
