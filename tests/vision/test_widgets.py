"""ImageClassifierCleaner driven through its widget objects (no browser): highest losses first, per data set and
category; delete() and change() report the choices; the star import; a clear error without ipywidgets."""

import importlib
import io
import sys

import pytest
import torch
from PIL import Image
from torch import nn

from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.vision.data import ImageDataLoaders
from lamina.vision.synth import make_image_folder
from lamina.vision.transforms import Resize
from lamina.vision.widgets import ImageClassifierCleaner, ImagesCleaner, carousel, widget


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    path = tmp_path_factory.mktemp("cleaner")
    make_image_folder(path, n_per_class=8, size=20, classes=("cat", "dog"), pets_style=False, fmt="png")
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4, num_workers=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return Learner(dls, model)


def cells(cleaner):
    return cleaner.iw.widget.children


def expected_order(learn, ds_idx, label):
    """The files of one data set and label, highest loss first, computed without the widget."""
    dl = learn.dls[ds_idx].new(shuffle=False, drop_last=False)
    with learn.no_bar():
        _, targs, losses = learn.get_preds(dl=dl, with_loss=True)
    files = [dl.dataset.items[i] for i in dl.dataset.idxs]
    rows = [(f, loss) for f, t, loss in zip(files, targs.tolist(), losses.tolist()) if learn.dls.vocab[t] == label]
    return [f for f, _ in sorted(rows, key=lambda r: r[1], reverse=True)]


def test_cleaner_shows_top_losses_by_data_set_and_category(learn):
    cleaner = ImageClassifierCleaner(learn, height=32, width=48)
    assert list(cleaner.dd_ds.options) == ["Train", "Valid"] and list(cleaner.dd_cats.options) == ["cat", "dog"]
    assert cleaner.widget.children == (cleaner.dd_cats, cleaner.dd_ds, cleaner.iw.widget)
    assert cleaner.fns == expected_order(learn, 0, "cat") and len(cleaner.fns) == 6
    assert all(fn.parent.name == "cat" and fn.parent.parent.name == "train" for fn in cleaner.fns)
    thumb, dropdown = cells(cleaner)[0].children
    assert list(dropdown.options) == ["<Keep>", "<Delete>", "cat", "dog"] and dropdown.value == "<Keep>"
    shown = Image.open(io.BytesIO(thumb.value))
    assert shown.width <= 48 and shown.height <= 32  # a thumbnail, aspect ratio kept
    cleaner.dd_ds.value = "Valid"
    assert cleaner.fns == expected_order(learn, 1, "cat") and len(cleaner.fns) == 2
    assert all(fn.parent.parent.name == "valid" for fn in cleaner.fns)
    cleaner.dd_cats.value = "dog"
    assert cleaner.fns == expected_order(learn, 1, "dog")


def test_delete_and_change_report_the_choices(learn):
    cleaner = ImageClassifierCleaner(learn)
    assert cleaner.delete() == [] and cleaner.change() == []
    cells(cleaner)[0].children[1].value = "<Delete>"
    cells(cleaner)[2].children[1].value = "dog"
    cells(cleaner)[3].children[1].value = "<Delete>"
    assert cleaner.delete() == [0, 3]
    assert cleaner.change() == [(2, "dog")]
    assert cleaner.values()[1] == "<Keep>"
    assert all(cleaner.fns[i].exists() for i in cleaner.delete())  # real files the user can unlink or move
    cleaner.dd_cats.value = "dog"  # another selection starts over
    assert cleaner.delete() == [] and cleaner.change() == []


def test_images_cleaner_and_helpers(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=3, size=12, classes=("a",), fmt="png")
    iw = ImagesCleaner(("a", "b"), max_n=2)
    iw.set_fns([str(f) for f in files])
    assert len(iw.widget.children) == 2 and iw.fns == files[:2]
    assert all(cell.layout.flex == "0 0 auto" for cell in iw.widget.children)
    assert carousel(width="50%").layout.width == "50%"
    assert widget(Image.new("RGB", (4, 4))).format == "png"


def test_cleaner_needs_files_and_a_vocabulary():
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 2
    tensors = DataLoaders.from_tensors(x, y, x, y, bs=4, vocab=["a", "b"], loss_func=CrossEntropyLossFlat())
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    with pytest.raises(TypeError, match="needs data whose items are image files"):
        ImageClassifierCleaner(Learner(tensors, model))
    no_vocab = DataLoaders.from_tensors(x, y, x, y, bs=4, loss_func=CrossEntropyLossFlat())
    with pytest.raises(ValueError, match="needs a classifier whose data has a vocabulary"):
        ImageClassifierCleaner(Learner(no_vocab, model))


def test_star_import_and_missing_extra(monkeypatch):
    namespace = {}
    exec("from lamina.vision.widgets import *", namespace)
    for name in ("ImageClassifierCleaner", "ImagesCleaner", "widgets", "VBox", "Button", "FileUpload", "Output",
                 "Label", "Dropdown", "widget", "carousel"):
        assert name in namespace, name
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "lamina.vision.widgets")
    with pytest.raises(ImportError, match=r"pip install 'lamina\[widgets\]'"):
        importlib.import_module("lamina.vision.widgets")
