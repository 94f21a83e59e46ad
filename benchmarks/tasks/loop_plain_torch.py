"""Plain PyTorch data: an MLP on ``DataLoaders.from_dsets(TensorDataset(...))``, 100k rows, bs 256,
``fit_one_cycle(3)``, beside a hand-written PyTorch loop (AdamW) over the same batches in the same process.

``time`` is the library's first fit in a fresh process: the wall clock of the ``fit_one_cycle`` call, the
optimizer's creation included. ``raw_time`` is the hand-written loop (shuffled index slices of the same
tensors, ``torch.optim.AdamW``, the same validation pass each epoch, on the CPU), timed after one throwaway AdamW step so
that torch's one-off optimizer start-up counts against neither; ``vs_raw`` is ``time / raw_time`` (target:
lamina ≤ 1.5). One forward/backward of the model runs before any timing on both sides (torch's own start-up).

``overhead_us_bs{64,256,1024}``: the library's time per batch over the hand-written loop's, in µs, from one
more epoch of each at that batch size (warm: after the first fit), training and validation batches counted.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, stopwatch

TITLE = "Plain PyTorch data: MLP on from_dsets(TensorDataset), 100k rows, bs 256, fit_one_cycle(3), vs a raw loop"
TARGET = None  # the target is against the raw loop (vs_raw <= 1.5 for lamina), not a lamina/fastai ratio
DATA = None
UNITS = {"time": "s", "raw_time": "s", "vs_raw": "×", "overhead_us_bs64": "µs", "overhead_us_bs256": "µs",
         "overhead_us_bs1024": "µs"}
TIMEOUT = 900

N_ROWS, N_IN, N_OUT, HIDDEN, BS, EPOCHS, LR = 100_000, 20, 4, 64, 256, 3, 3e-3
OVERHEAD_BS = (64, 256, 1024)


def make_data(quick: bool = False) -> tuple:
    """``(x_train, y_train, x_valid, y_valid)`` tensors: 80% / 20% of ``N_ROWS`` noisy linear classes."""
    import torch
    gen = torch.Generator().manual_seed(0)
    n = N_ROWS // 10 if quick else N_ROWS
    x = torch.randn(n, N_IN, generator=gen)
    w = torch.randn(N_IN, N_OUT, generator=gen)
    y = (x @ w + torch.randn(n, N_OUT, generator=gen)).argmax(1)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def make_model(seed: int):
    """The same plain torch MLP on both sides, from the same seed."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, N_OUT))


def raw_fit(model: Any, data: tuple, bs: int, epochs: int, lr: float) -> tuple[float, float]:
    """The hand-written loop: AdamW over shuffled index slices, then a validation pass, each epoch.

    Returns:
        ``(valid_loss, accuracy)`` of the last epoch.
    """
    import torch
    import torch.nn.functional as F
    xt, yt, xv, yv = data
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    n = len(xt)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n)
        for start in range(0, n - n % bs, bs):
            idx = order[start:start + bs]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(xv), bs):
                out = model(xv[start:start + bs])
                total += float(F.cross_entropy(out, yv[start:start + bs], reduction="sum"))
                correct += int((out.argmax(1) == yv[start:start + bs]).sum())
    return total / len(xv), correct / len(xv)


def _n_batches(data: tuple, bs: int, epochs: int) -> int:
    return epochs * (len(data[0]) // bs + -(-len(data[2]) // bs))


def _measure(fit: Any, data: tuple, opts: dict[str, Any]) -> dict[str, Any]:
    """First fit (timed), then the raw loop, then one warm epoch of each per batch size in `OVERHEAD_BS`.

    ``fit(model, data, bs, epochs)`` trains ``model`` with the library and returns ``(valid_loss, accuracy)``.
    """
    import torch
    import torch.nn.functional as F
    seed = int(opts["seed"]) + int(opts.get("round", 0))
    model = make_model(seed)
    F.cross_entropy(model(data[0][:BS]), data[1][:BS]).backward()  # torch's start-up, not the library's
    model.zero_grad(set_to_none=True)
    with stopwatch() as t:
        valid = fit(model, data, BS, EPOCHS)
    torch.optim.AdamW(make_model(seed).parameters()).step()  # the raw loop's optimizer start-up, untimed
    with stopwatch() as raw:
        raw_valid = raw_fit(make_model(seed), data, BS, EPOCHS, LR)
    out = {"time": t.seconds, "raw_time": raw.seconds, "vs_raw": t.seconds / raw.seconds}
    for bs in OVERHEAD_BS if not opts.get("quick") else (BS,):
        with stopwatch() as lib_t:
            fit(make_model(seed), data, bs, 1)
        with stopwatch() as raw_t:
            raw_fit(make_model(seed), data, bs, 1, LR)
        out[f"overhead_us_bs{bs}"] = 1e6 * (lib_t.seconds - raw_t.seconds) / _n_batches(data, bs, 1)
    out["quality"] = {"valid_loss": float(valid[0]), "accuracy": float(valid[1]),
                      "raw_valid_loss": raw_valid[0], "raw_accuracy": raw_valid[1]}
    out["info"] = {"rows": f"{len(data[0])} train / {len(data[2])} valid", "bs": BS,
                   "batches": _n_batches(data, BS, EPOCHS), "threads": torch.get_num_threads()}
    return out


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from torch.utils.data import TensorDataset

    from lamina.basics import CrossEntropyLossFlat, DataLoaders, Learner, accuracy
    prepare(opts)
    data = make_data(opts.get("quick", False))

    def fit(model, data, bs, epochs):
        dls = DataLoaders.from_dsets(TensorDataset(*data[:2]), TensorDataset(*data[2:]), bs=bs,
                                     device=pick_device(opts))
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
        learn.fit_one_cycle(epochs, LR)  # with the default progress bars, as a user's script runs
        return learn.recorder.values[-1][1], learn.recorder.values[-1][2]
    return _measure(fit, data, opts)


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle to Learner)
    import torch
    from fastai.basics import CrossEntropyLossFlat, DataLoaders, Learner, accuracy
    from torch.utils.data import TensorDataset
    prepare(opts)
    data = make_data(opts.get("quick", False))

    def fit(model, data, bs, epochs):
        dls = DataLoaders.from_dsets(TensorDataset(*data[:2]), TensorDataset(*data[2:]), bs=bs,
                                     device=torch.device(pick_device(opts)))
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
        learn.fit_one_cycle(epochs, LR)  # with the default progress bars, as a user's script runs
        return learn.recorder.values[-1][1], learn.recorder.values[-1][2]
    return _measure(fit, data, opts)
