"""The fastai-book names added to the star-import surfaces: present, listed once in ``__all__``, the same objects."""

from __future__ import annotations

import importlib

import pytest

BASICS = ["L", "Module", "Optimizer", "Lookahead", "ranger", "QHAdam", "Larc", "Lamb", "StepperSGD",
          "StepperRMSProp", "StepperAdam", "StepperRAdam", "sgd_step", "weight_decay", "l2_reg", "average_grad",
          "average_sqr_grad", "momentum_step", "rms_prop_step", "step_stat", "debias", "adam_step", "radam_step",
          "qhadam_step", "larc_layer_lr", "larc_step", "lamb_step"]
EXTRA = {"lamina.tabular.all": ["make_date", "add_datepart", "add_elapsed_times", "df_shrink", "df_shrink_dtypes",
                                "get_emb_sz"],
         "lamina.collab": ["get_emb_sz"], "lamina.vision.all": [], "lamina.basics": []}


@pytest.mark.parametrize("surface", sorted(EXTRA))
def test_surfaces_export_the_book_names(surface):
    module = importlib.import_module(surface)
    for name in BASICS + EXTRA[surface]:
        assert name in module.__all__ and hasattr(module, name), f"{surface} lacks {name}"
    assert len(module.__all__) == len(set(module.__all__))
    from lamina import foundation, optim, optimizer
    assert module.L is foundation.L and module.Optimizer is optimizer.Optimizer
    assert module.Adam is optim.Adam and optimizer.Adam is optim.Adam  # the default Adam is torch's kernel


def test_book_style_code_after_the_star_import(tmp_path):
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "a.txt").write_text("x")
    scope: dict = {"folder": str(tmp_path)}
    exec("from lamina.vision.all import *\n"
         "files = Path(folder).ls().sorted()\n"
         "names = files.attrgot('name')\n"
         "opt_func = partial(Optimizer, cbs=[sgd_step])\n", scope)
    assert repr(scope["names"]) == "(#2) ['a.txt','b.txt']"
    assert scope["opt_func"].func is scope["Optimizer"]


CHAPTER_4 = """
from lamina.vision.all import *
torch.manual_seed(0)
threes, sevens = torch.rand(24, 8, 8) * 0.3, torch.rand(24, 8, 8) * 0.3 + 0.7
train_x = torch.cat([threes, sevens]).view(-1, 8*8)
train_y = tensor([1]*len(threes) + [0]*len(sevens)).unsqueeze(1)
dset = list(zip(train_x, train_y))
dl = DataLoader(dset, batch_size=16, shuffle=True)
xb, yb = first(dl)
valid_dl = DataLoader(dset[:8] + dset[-8:], batch_size=8)
dls = DataLoaders(dl, valid_dl)
def mnist_loss(predictions, targets):
    predictions = predictions.sigmoid()
    return torch.where(targets==1, 1-predictions, predictions).mean()
def batch_accuracy(xb, yb):
    return ((xb.sigmoid() > 0.5) == yb).float().mean()
learn = Learner(dls, nn.Linear(8*8, 1), opt_func=SGD, loss_func=mnist_loss, metrics=batch_accuracy)
learn.fit(4, lr=1.0)
accuracies = L(learn.recorder.values).itemgot(2)
"""


def test_chapter_4_trains_from_a_list_of_tuples(monkeypatch):
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    scope: dict = {}
    exec(CHAPTER_4, scope)
    assert scope["xb"].shape == (16, 64) and scope["yb"].shape == (16, 1)
    values = scope["learn"].recorder.values
    assert values[-1][1] < values[0][1] and scope["accuracies"][-1] >= 0.9  # separable: it learns
