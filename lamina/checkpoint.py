"""Checkpoints: `save` / `load` of everything needed to resume a fit exactly, written atomically.

A checkpoint holds the model, the optimizer (state and per-group hypers), the grad scaler, the
random states (Python, numpy, torch CPU and CUDA), the loaders' epoch counters and the number of
epochs done. It is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import rank_distrib

__all__ = ["CheckpointMixin", "atomic_write", "rng_states", "set_rng_states"]


def atomic_write(path: Path, write: Any) -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any file the user writes
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


class CheckpointMixin:
    """`save` and `load` for the Learner."""

    def _checkpoint_path(self, file: str | Path) -> Path:
        file = Path(file)
        if file.suffix != ".pth":
            file = file.with_name(file.name + ".pth")
        return file if file.is_absolute() else self.path / self.model_dir / file

    def save(self, file: str | Path, with_opt: bool = True) -> Path | None:
        """Save a checkpoint to ``path/model_dir/file.pth`` (atomically); returns its path.

        Skipped (returns None) on processes other than rank 0.
        """
        if rank_distrib() != 0:
            return None
        state = {"model": self.model.state_dict(), "epoch": getattr(self, "epochs_done", 0),
                 "rng": rng_states(), "loaders": [[dl.seed, dl.epochs_seen] for dl in self.dls.loaders]}
        recorder = getattr(self, "recorder", None)
        if recorder is not None and recorder.smooth_loss.count:
            state["smooth_loss"] = [recorder.smooth_loss.count, float(recorder.smooth_loss.val)]
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        mixed = getattr(self, "mixed_precision", None)
        if mixed is not None and mixed.scaler is not None:
            state["scaler"] = mixed.scaler.state_dict()
        path = self._checkpoint_path(file)
        return atomic_write(path, lambda f: torch.save(state, f))

    def load(self, file: str | Path, device: torch.device | str | None = None, with_opt: bool = True,
             strict: bool = True, resume: bool = False) -> Any:
        """Load a checkpoint written by `save` (safely: ``weights_only=True``).

        Args:
            file: the name under ``path/model_dir`` (``.pth`` added), or a path.
            device: where the weights go (default: the data's device).
            with_opt: also restore the optimizer's state and hypers.
            strict: the checkpoint's keys must match the model's exactly.
            resume: also restore the training position (random states, the loaders' shuffles, the epochs done
                and the smoothed loss), to continue an interrupted fit exactly with
                ``fit_one_cycle(n, start_epoch=learn.epochs_done)``.

        Raises:
            FileNotFoundError: naming the checkpoint path when it does not exist.
            ValueError: when the checkpoint does not fit this model or optimizer (the model is left unchanged).
        """
        path = self._checkpoint_path(file)
        if not path.exists():
            raise FileNotFoundError(f"No checkpoint at {path}: check the name, or `learn.path`/`learn.model_dir` "
                                    f"(now {self.path}/{self.model_dir})")
        device = device if device is not None else self.dls.device
        state = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay CPU tensors
        if "model" not in state:  # a bare state dict, as other tools write
            state = {"model": state}
        self._load_weights_and_opt(path, state, with_opt, strict)
        self.model.to(device)
        if resume:
            self._resume_from(state)
        return self

    def _load_weights_and_opt(self, path: Path, state: dict, with_opt: bool, strict: bool) -> None:
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            self.model.load_state_dict(state["model"], strict=strict)
            if with_opt and "opt" in state:
                if self.opt is None:
                    self.create_opt()
                self.opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            self.model.load_state_dict(backup)
            raise ValueError(f"The checkpoint {path} does not fit this learner ({e}). It was saved from another "
                             "model or param-group split; load it into the same architecture, or pass "
                             "with_opt=False / strict=False") from e
        if with_opt and "opt" not in state:
            warnings.warn(f"{path} holds no optimizer state: the optimizer starts fresh")

    def _resume_from(self, state: dict) -> None:
        if "rng" in state:
            set_rng_states(state["rng"])
        for dl, (seed, seen) in zip(self.dls.loaders, state.get("loaders", [])):
            dl.seed, dl.epochs_seen = seed, seen  # the same shuffles as the interrupted run
        self.epochs_done = state.get("epoch", 0)
        if "smooth_loss" in state and getattr(self, "recorder", None) is not None:
            self.recorder.resume_smooth_loss = state["smooth_loss"]
        if "scaler" in state and getattr(self, "mixed_precision", None) is not None:
            self.mixed_precision.pending_scaler_state = state["scaler"]
