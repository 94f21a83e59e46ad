"""Checkpoints: `save` / `load` of everything needed to resume a fit exactly, written atomically.

A checkpoint holds the model, the optimizer (state and per-group hypers), the random states (Python,
numpy, torch CPU and CUDA), the loaders' epoch counters, the number of epochs done, and each callback's
own state by callback name (the Recorder's smoothed loss, the grad scaler, the trackers' best value). It is
written to a temporary file in the same folder, flushed to disk, then renamed over the old one: a crash mid-write
leaves the previous checkpoint intact, and the next write into that folder removes the temporary file the crashed
writer left. `save_model` / `load_model` do the same for a model outside a Learner.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write  # (re-exported: its former home)
from .compiled import fit_state_keys, plain_state_dict
from .core import rank_distrib
from .distributed import all_gather_cat, get_rank, is_initialized, on_rank0, world_size

__all__ = ["CheckpointMixin", "atomic_write", "rng_states", "set_rng_states", "save_model", "load_model"]


def rng_states() -> dict:
    """Python's, numpy's and torch's random states (as tensors and plain types: loadable with weights_only)."""
    np_state = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()),
                                                      *np_state[2:]), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore the states returned by `rng_states`."""
    random.setstate(_tuples(states["python"]))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in a nested dict/list/tuple (the bulk of a saved checkpoint)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        obj = list(obj.values())
    return sum(_tensor_bytes(o) for o in obj) if isinstance(obj, (list, tuple)) else 0


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


class CheckpointMixin:
    """`save` and `load` for the Learner."""

    _resume_states: dict | None = None  # callback states from `load(..., resume=True)`, for the next fit

    def _checkpoint_path(self, file: str | Path) -> Path:
        file = Path(file)
        if file.suffix != ".pth":
            file = file.with_name(file.name + ".pth")
        return file if file.is_absolute() else self.path / self.model_dir / file

    def save(self, file: str | Path, with_opt: bool = True) -> Path | None:
        """Save a checkpoint to ``path/model_dir/file.pth`` (atomically); returns its path.

        Args:
            file: the name under ``path/model_dir`` (``.pth`` added), or a path.
            with_opt: also save the optimizer's state, which ``load(..., resume=True)`` needs to continue
                the fit exactly (without it, the file holds weights for fine-tuning or inference).

        Returns:
            the path written, or None on processes other than rank 0 (they skip the save). Under data-parallel
            training every rank must call it (rank 0 writes while the others wait for the file).

        Raises:
            OSError: (errno ENOSPC) when the disk is full; the previous checkpoint is left intact.
        """
        if is_initialized():  # data-parallel: rank 0 writes, every rank waits until the file is there
            torch_rngs = all_gather_cat(torch.get_rng_state().unsqueeze(0))  # each rank's dropout stream
            return on_rank0(self._save, file, with_opt, torch_rngs)
        return None if rank_distrib() != 0 else self._save(file, with_opt)

    def _save(self, file: str | Path, with_opt: bool, torch_rngs: torch.Tensor | None = None) -> Path:
        state = {"model": plain_state_dict(self.model), "epoch": getattr(self, "epochs_done", 0),
                 "rng": rng_states(), "loaders": [[dl.seed, dl.epochs_seen] for dl in self.dls.loaders]}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        if torch_rngs is not None:
            state["torch_rng_per_rank"] = torch_rngs
        callbacks = {cb.name: cb.state_dict() for cb in self.cbs if getattr(self, cb.name, None) is cb}
        state["callbacks"] = {name: cb_state for name, cb_state in callbacks.items() if cb_state}
        path = self._checkpoint_path(file)
        return atomic_write(path, lambda f: torch.save(state, f), size_hint=_tensor_bytes(state), what="checkpoint")

    def load(self, file: str | Path, device: torch.device | str | None = None, with_opt: bool = True,
             strict: bool = True, resume: bool = False) -> Any:
        """Load a checkpoint written by `save` (safely: ``weights_only=True``).

        Args:
            file: the name under ``path/model_dir`` (``.pth`` added), or a path.
            device: where the weights go (default: the data's device).
            with_opt: also restore the optimizer's state and hypers.
            strict: the checkpoint's keys must match the model's exactly.
            resume: also restore the training position (random states, the loaders' shuffles, the epochs done;
                the callbacks' state — smoothed loss, grad scale, trackers' best value and patience — goes to
                the callbacks of the same name in the next fit), to continue an interrupted fit exactly with
                ``fit_one_cycle(n, start_epoch=learn.epochs_done)``. The file must hold the optimizer's state:
                ``learn.save(name, with_opt=True)`` (the default) or ``SaveModelCallback(with_opt=True)``
                (its default, as fastai's, is ``with_opt=False``).

        Raises:
            FileNotFoundError: naming the checkpoint path when it does not exist.
            ValueError: when the checkpoint does not fit this model or optimizer, or ``resume=True`` and it
                holds no optimizer state (the model is left unchanged).
        """
        path = self._checkpoint_path(file)
        if not path.exists():
            raise FileNotFoundError(f"No checkpoint at {path}: check the name, or `learn.path`/`learn.model_dir` "
                                    f"(now {self.path}/{self.model_dir})")
        device = device if device is not None else self.dls.device
        state = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay CPU tensors
        if "model" not in state:  # a bare state dict, as other tools write
            state = {"model": state}
        if resume and "opt" not in state:
            raise ValueError(f"{path} holds no optimizer state (saved with with_opt=False, or before the optimizer "
                             "existed), so resume=True cannot continue the fit exactly: a fresh optimizer would make "
                             "it diverge. Save checkpoints that resume with "
                             "learn.save(name, with_opt=True) or SaveModelCallback(with_opt=True); to fine-tune "
                             "from these weights instead, load without resume=True")
        self._load_weights_and_opt(path, state, with_opt, strict)
        self.model.to(device)
        if resume:
            self._resume_from(state)
        return self

    def _load_weights_and_opt(self, path: Path, state: dict, with_opt: bool, strict: bool) -> None:
        def learner_opt() -> Any:
            if self.opt is None:
                self.create_opt()
            return self.opt
        _load_into(path, state, self.model, learner_opt, with_opt, strict, "this learner")

    def _resume_from(self, state: dict) -> None:
        if "rng" in state:
            set_rng_states(state["rng"])
        per_rank = state.get("torch_rng_per_rank")
        if per_rank is not None and is_initialized() and len(per_rank) == world_size():
            torch.set_rng_state(per_rank[get_rank()].clone())  # this rank's own stream, as before the stop
        for dl, (seed, seen) in zip(self.dls.loaders, state.get("loaders", [])):
            dl.seed, dl.epochs_seen = seed, seen  # the same shuffles as the interrupted run
        self.epochs_done = state.get("epoch", 0)
        self._resume_states = state.get("callbacks", _legacy_callback_states(state))

    def _restore_callback_states(self) -> None:
        """Give the callbacks of a resumed fit (``start_epoch > 0``) their state from the checkpoint, once.

        Called by `fit` after ``before_fit``, which sets the callbacks up afresh; callbacks are matched by
        name, and a callback the checkpoint does not name keeps its fresh state.
        """
        states, self._resume_states = self._resume_states, None
        if not states or self.start_epoch == 0:
            return
        for cb in self.cbs:
            if cb.name in states and getattr(self, cb.name, None) is cb:
                cb.load_state_dict(states[cb.name])


def _legacy_callback_states(state: dict) -> dict:
    """The callback states of a checkpoint written before callbacks kept their own (top-level keys)."""
    states = {}
    if "smooth_loss" in state:
        states["recorder"] = {"smooth_loss": state["smooth_loss"]}
    if state.get("scaler"):
        states["mixed_precision"] = {"scaler": state["scaler"]}
    return states


def save_model(file: str | Path, model: torch.nn.Module, opt: Any = None, with_opt: bool = True,
               pickle_protocol: int = 2) -> Path:
    """Save ``model``'s weights (and ``opt``'s state if ``with_opt``) to ``file``, atomically: fastai's function
    behind ``learn.save``, for a model outside a Learner. ``pickle_protocol`` is accepted for compatibility.

    Returns:
        The path written.
    """
    state = {"model": plain_state_dict(model)}
    if with_opt and opt is not None:
        state["opt"] = opt.state_dict()
    return atomic_write(Path(file), lambda f: torch.save(state, f), size_hint=_tensor_bytes(state), what="checkpoint")


def load_model(file: str | Path, model: torch.nn.Module, opt: Any = None, with_opt: bool = True,
               device: torch.device | str | None = None, strict: bool = True) -> None:
    """Load weights written by `save_model` or ``learn.save`` (or a bare state dict) into ``model``, and the
    optimizer's state into ``opt`` when both are there; read with ``weights_only=True``.

    Raises:
        FileNotFoundError: naming ``file`` when it does not exist.
        ValueError: when the weights do not fit ``model`` (the model is left unchanged).
    """
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"load_model: no file at {path}; check the path (learn.save writes "
                                "<learn.path>/<model_dir>/<name>.pth)")
    state = torch.load(path, map_location=device or "cpu", weights_only=True)
    state = state if isinstance(state, dict) and "model" in state else {"model": state}
    _load_into(path, state, model, (lambda: opt) if opt is not None else None, with_opt, strict, "this model")


def _load_into(path: Path, state: dict, model: torch.nn.Module, get_opt: Callable[[], Any] | None, with_opt: bool,
               strict: bool, what: str) -> None:
    """``state``'s weights into ``model`` and, with ``with_opt``, its optimizer state into ``get_opt()``; on a
    mismatch the model is left as it was and the ValueError names ``path``."""
    backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(fit_state_keys(state["model"], model), strict=strict)
        if with_opt and get_opt is not None and "opt" in state:
            get_opt().load_state_dict(state["opt"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        model.load_state_dict(backup)
        raise ValueError(f"The checkpoint {path} does not fit {what} ({e}). It was saved from another model or "
                         "param-group split; load it into the same architecture, or pass with_opt=False / "
                         "strict=False") from e
    if with_opt and get_opt is not None and "opt" not in state:
        warnings.warn(f"{path} holds no optimizer state: the optimizer starts fresh")
