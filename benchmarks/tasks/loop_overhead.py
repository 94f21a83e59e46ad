"""Per-batch cost of the training loop: a tiny MLP on 100k synthetic rows, ``fit_one_cycle(3)`` at bs 64.

The model is so small that the time goes to what the library does around each batch (fetching it,
callbacks, schedules, the optimizer step, progress, recording), not to arithmetic. Each side uses its
library's own way of training on in-memory tensors with the default callbacks: lamina's
``DataLoaders.from_tensors``, fastai's ``DataLoaders.from_dsets`` over a ``TensorDataset``.

``time`` is the wall clock of the ``fit_one_cycle`` call, the optimizer's creation included (a user's first
fit pays it: the first ``torch.optim`` optimizer of a process imports ``torch._dynamo``, ~1.4 s).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, stopwatch

TITLE = "Training-loop overhead: tiny MLP, 100k synthetic rows, bs 64, fit_one_cycle(3)"
TARGET = {"metric": "time", "max_ratio": 0.5,
          # a sanity guard: a fast loop must still train as well
          "quality": [{"name": "accuracy", "better": "higher", "tol": 0.01}]}
DATA = None
UNITS = {"time": "s", "ms_per_batch": "ms"}
TIMEOUT = 900

N_ROWS, N_IN, N_OUT, HIDDEN, BS, EPOCHS, LR = 100_000, 20, 4, 64, 64, 3, 3e-3


def make_data(quick: bool = False) -> tuple:
    """``(x_train, y_train, x_valid, y_valid)`` as numpy arrays: 80% / 20% of ``N_ROWS`` noisy linear classes."""
    import numpy as np
    rng = np.random.default_rng(0)
    n = N_ROWS // 10 if quick else N_ROWS
    x = rng.standard_normal((n, N_IN)).astype(np.float32)
    w = rng.standard_normal((N_IN, N_OUT)).astype(np.float32)
    # noise on the logits makes the classes overlap, so the final loss says how well each side trained
    y = (x @ w + rng.standard_normal((n, N_OUT)).astype(np.float32)).argmax(1).astype(np.int64)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def make_model():
    """The same plain torch MLP on both sides (built right after seeding, so both start from the same weights)."""
    from torch import nn
    return nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, N_OUT))


def _warm_up(model, x, y, device: str) -> None:
    """One forward/backward outside the timing, so that torch's one-off start-up costs count for neither side."""
    import torch
    model.to(device)
    out = model(torch.as_tensor(x[:BS], device=device))
    torch.nn.functional.cross_entropy(out, torch.as_tensor(y[:BS], device=device)).backward()
    model.zero_grad(set_to_none=True)


def _result(seconds: float, n_batches: int, valid: list, n_train: int, n_valid: int) -> dict[str, Any]:
    return {"time": seconds, "ms_per_batch": 1000 * seconds / n_batches,
            "quality": {"valid_loss": float(valid[0]), "accuracy": float(valid[1])},
            "info": {"rows": f"{n_train} train / {n_valid} valid", "bs": BS, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from lamina.data.loaders import DataLoaders
    from lamina.learner import Learner
    from lamina.losses import CrossEntropyLossFlat
    from lamina.metrics import accuracy
    prepare(opts)
    device = pick_device(opts)
    model = make_model()
    xt, yt, xv, yv = make_data(opts.get("quick", False))
    _warm_up(model, xt, yt, device)
    dls = DataLoaders.from_tensors(*(torch.as_tensor(a) for a in (xt, yt, xv, yv)), bs=BS, device=device)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with stopwatch() as t:
        learn.fit_one_cycle(EPOCHS, LR)
    n_batches = EPOCHS * (len(dls.train) + len(dls.valid))
    return _result(t.seconds, n_batches, learn.validate(), len(xt), len(xv))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle to Learner)
    from fastai.basics import CrossEntropyLossFlat, DataLoaders, Learner, accuracy
    from torch.utils.data import TensorDataset
    prepare(opts)
    device = pick_device(opts)
    model = make_model()
    xt, yt, xv, yv = make_data(opts.get("quick", False))
    _warm_up(model, xt, yt, device)
    train_ds = TensorDataset(torch.as_tensor(xt), torch.as_tensor(yt))
    valid_ds = TensorDataset(torch.as_tensor(xv), torch.as_tensor(yv))
    dls = DataLoaders.from_dsets(train_ds, valid_ds, bs=BS, device=torch.device(device))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with stopwatch() as t:
        learn.fit_one_cycle(EPOCHS, LR)
    n_batches = EPOCHS * (len(dls.train) + len(dls.valid))
    return _result(t.seconds, n_batches, list(learn.validate()), len(xt), len(xv))
