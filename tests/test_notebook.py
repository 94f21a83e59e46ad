"""A small notebook run in a real Jupyter kernel (nbclient): every plot call shows exactly one image and prints no
``[<Axes ...>]``, epoch tables are HTML, progress bars are widgets, tabular numbers are rounded for reading."""

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
pytest.importorskip("ipykernel", reason="ipykernel is in the dev extra")

ROOT = Path(__file__).resolve().parents[1]

SETUP = f"""
import os, sys, warnings
sys.path.insert(0, {str(ROOT)!r})
import torch
from torch import nn
from lamina.vision.all import *
from lamina.tabular.all import TabularDataLoaders, Categorify, FillMissing, Normalize
from lamina.tabular.synth import adult_like
from lamina.vision.synth import make_image_folder, make_segmentation_set
set_seed(0)
path = Path('data')
files = make_image_folder(path / 'pets', n_per_class=6, size=24)
dls = ImageDataLoaders.from_name_func(path / 'pets', files, valid_pct=0.5, seed=0, label_func=lambda x: x[0].isupper(),
                                      item_tfms=Resize(16), bs=4, num_workers=0)
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
learn = Learner(dls, model, metrics=error_rate)
"""

# (source, what its outputs must hold): 'image' exactly one PNG; 'table' an HTML table; 'widget' progress widgets
CELLS = [
    (SETUP, set()),
    ("dls.show_batch(max_n=4)", {"image"}),
    ("learn.fit(2)", {"table", "widget"}),
    ("learn.show_results(max_n=4)", {"image"}),
    ("interp = ClassificationInterpretation.from_learner(learn)\ninterp.plot_top_losses(3)", {"image", "widget"}),
    ("interp.plot_confusion_matrix()", {"image"}),
    ("learn.recorder.plot_loss()", {"image", "warning"}),
    ("learn.lr_find(num_it=12)", {"image", "widget"}),
    (("seg = make_segmentation_set(path / 'seg', n=4, size=(16, 24))\n"
      "sdls = SegmentationDataLoaders.from_label_func(path / 'seg', seg, lambda o: path / 'seg' / 'labels' / "
      "f'{o.stem}_P.png', codes=['a', 'b', 'c'], valid_pct=0.5, seed=0, bs=2, num_workers=0)\nsdls.show_batch()"),
     {"image"}),
    (("df = adult_like(64)\ntdls = TabularDataLoaders.from_df(df, path, procs=[Categorify, FillMissing, Normalize], "
      "cat_names=['workclass'], cont_names=['age', 'fnlwgt'], y_names='salary', bs=16)\ntdls.show_batch(max_n=3)"),
     {"table"}),
]


def outputs_of(cell) -> dict:
    kinds = {"png": 0, "html": [], "widgets": 0, "text": "", "stderr": ""}
    for out in cell.outputs:
        data = out.get("data", {})
        kinds["png"] += "image/png" in data
        kinds["widgets"] += "application/vnd.jupyter.widget-view+json" in data
        if "text/html" in data:
            kinds["html"].append(data["text/html"])
        kinds["text"] += data.get("text/plain", "") + (out.get("text", "") if out.get("name") == "stdout" else "")
        kinds["stderr"] += out.get("text", "") if out.get("name") == "stderr" else ""
        assert out["output_type"] != "error", "".join(out.get("traceback", []))
    return kinds


@pytest.mark.slow  # a kernel start and ten cells: about 15 s on two cores
def test_a_notebook_shows_each_plot_once_with_html_tables_and_widget_progress(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source, _ in CELLS])
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel picks Jupyter's inline backend
    env.pop("LAMINA_PROGRESS", None)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    for cell, (source, expected) in zip(notebook.cells, CELLS):
        got = outputs_of(cell)
        assert "[<Axes" not in got["text"] and "<Figure" not in got["text"], source
        assert got["png"] == (1 if "image" in expected else 0), source
        assert bool(got["widgets"]) == ("widget" in expected), source
        assert any("<table" in h for h in got["html"]) == ("table" in expected), source
        assert ("skip_start" in got["stderr"]) == ("warning" in expected), source
    # 6 training images in batches of 4: one batch an epoch, so 12 lr_find iterations are 12 training passes,
    # each with its bar, and no bar for the validations lr_find skips
    assert outputs_of(notebook.cells[7])["widgets"] == 12
    tabular = outputs_of(notebook.cells[-1])["html"][0]
    assert "fnlwgt" in tabular and not re.findall(r"\d\.\d{5,}", tabular)  # no 158206.000591
