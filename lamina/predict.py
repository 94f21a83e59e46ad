"""Evaluation and prediction for the Learner: `validate`, `get_preds`, `predict`."""

from __future__ import annotations

from typing import Any

import torch

from .callbacks.core import Callback
from .core import as_float, as_members, to_cpu
from .losses import loss_not_reduced

__all__ = ["PredictMixin", "GatherPredsCallback"]


class GatherPredsCallback(Callback):
    """Collects inputs, predictions, targets and per-item losses of a validation pass on the CPU."""

    order = 70

    def __init__(self, with_input: bool = False, with_loss: bool = False):
        super().__init__()
        self.with_input, self.with_loss = with_input, with_loss
        self.inputs, self.preds, self.targets, self.losses = [], [], [], []

    def after_loss(self) -> None:
        learn = self.learn
        if self.with_input:
            self.inputs.append(to_cpu(learn.xb))
        self.preds.append(to_cpu(learn.pred))
        if learn.yb:
            self.targets.append(to_cpu(learn.yb))
            if self.with_loss:
                with loss_not_reduced(learn.loss_func):
                    per_element = learn.loss_func(learn.pred, *learn.yb)
                bs = len(learn.yb[0])
                self.losses.append(per_element.detach().float().reshape(bs, -1).mean(1).cpu())

    def gather_parts(self, gather: Any) -> None:
        """Replace this process's batches by every process's, through ``gather(list_of_batches)`` (after a sharded
        data-parallel pass; `lamina.callbacks.distributed.DistributedTrainer` calls it)."""
        for name in ("inputs", "preds", "targets", "losses"):
            if getattr(self, name):
                setattr(self, name, gather(getattr(self, name)))


def _cat(parts: list) -> Any:
    """Concatenate a list of batches (tensors, or tuples of tensors) along the first dimension.

    Batches whose other dimensions differ (a language model's shorter last sequence) cannot be one tensor: they
    come back as a list of the items' tensors, in order, as fastai's ``get_preds`` gives them."""
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, torch.Tensor):
        if any(p.shape[1:] != first.shape[1:] for p in parts):
            return [item for p in parts for item in p]
        return torch.cat(parts)
    if isinstance(first, (list, tuple)):
        merged = tuple(_cat([p[i] for p in parts]) for i in range(len(first)))
        return merged[0] if len(merged) == 1 else merged
    return parts


class PredictMixin:
    """`validate`, `get_preds` and `predict` for the Learner."""

    def _eval_pass(self, dl: Any, cbs: list) -> None:
        """One validation pass over ``dl`` with extra callbacks, quietly."""
        self.model.to(self.dls.device)
        self.epoch = getattr(self, "epoch", 0)
        with self.added_cbs(cbs), self.no_logging():
            self._one_pass(dl, "validate")
        self._end_cleanup()

    def validate(self, ds_idx: int = 1, dl: Any = None, cbs: Any = None) -> list[float]:
        """Loss and metrics on a loader (default: the validation set) → ``[valid_loss, *metrics]``."""
        dl = dl if dl is not None else self.dls[ds_idx]
        recorder = self.recorder
        saved_log = list(recorder.log)
        self._eval_pass(dl, list(cbs or []))
        recorder.log = saved_log  # validate() outside a fit adds no row
        recorder = self.recorder
        values = [float(recorder.loss.value)] + [as_float(m.value) for m in self.metrics]
        self.final_record = values
        return values

    def get_preds(self, ds_idx: int = 1, dl: Any = None, with_input: bool = False, with_decoded: bool = False,
                  with_loss: bool = False, act: Any = None, inner: bool = False, reorder: bool = True,
                  cbs: Any = None, **kwargs: Any) -> tuple:
        """Predictions on a loader, in the dataset's order, gathered on the CPU.

        Args:
            ds_idx: which of ``dls`` (1: validation) when ``dl`` is not given.
            dl: a loader (e.g. from ``dls.test_dl``).
            with_input: also return the inputs (first).
            with_decoded: also return ``loss_func.decodes(preds)`` (class indices, thresholded labels ...).
            with_loss: also return the loss of each item (last).
            act: activation applied to the raw outputs (default: the loss's ``activation``, e.g. softmax).
            inner, reorder: accepted for fastai compatibility; lamina's loaders here are never shuffled, so
                predictions always come in the dataset's order.

        Returns:
            ``(inputs?, preds, targets, decoded?, losses?)``; targets is None for unlabelled data.

        Raises:
            TypeError: for other keyword arguments (fastai's ``save_preds``/``save_targs`` are not supported:
                save the returned tensors with ``torch.save``).
        """
        if kwargs:
            raise TypeError(f"get_preds() got unexpected keyword arguments {sorted(kwargs)}; to keep predictions, "
                            "torch.save() the returned tensors")
        if dl is None:
            dl = self.dls[ds_idx].new(shuffle=False, drop_last=False)
        gather = GatherPredsCallback(with_input=with_input, with_loss=with_loss)
        self._eval_pass(dl, [gather, *(cbs or [])])
        if not gather.preds:
            raise ValueError("get_preds found no batches: the loader is empty")
        act = act if act is not None else getattr(self.loss_func, "activation", None)
        preds = _cat([act(p) for p in gather.preds] if act is not None else gather.preds)  # per batch: see _cat
        out = ([_cat(gather.inputs)] if with_input else []) + [preds, _cat(gather.targets)]
        if with_decoded:
            decodes = getattr(self.loss_func, "decodes", None) or (lambda p: p)
            out.append([decodes(p) for p in preds] if isinstance(preds, list) else decodes(preds))
        if with_loss:
            out.append(_cat(gather.losses))
        return tuple(out)

    def predict(self, item: Any, rm_type_tfms: Any = None, with_input: bool = False) -> tuple:
        """Predict one item (what ``dls.test_dl`` accepts: an image, a file name, a row, a tensor ...).

        Args:
            item: the item.
            rm_type_tfms: accepted for fastai compatibility (lamina's pipelines accept raw and decoded items).
            with_input: also return the input, as the model saw it with batch transforms undone
                (e.g. a de-normalised image tensor).

        Returns:
            ``(decoded prediction, decoded tensor, probabilities)``, prefixed by the input if ``with_input``.
        """
        dl = self.dls.test_dl([item], num_workers=0) if hasattr(self.dls.valid.dataset, "test_set") \
            else self.dls.test_dl(item.unsqueeze(0) if isinstance(item, torch.Tensor) else item)
        with self.no_bar():  # one item: a progress bar would be noise
            inputs, preds, _, decoded = self.get_preds(dl=dl, with_input=True, with_decoded=True)
        decoded, probs = decoded[0], preds[0]
        image = inputs[0] if isinstance(inputs, tuple) else inputs
        full = self.decode_prediction(decoded, input_hw=tuple(image.shape[-2:]) if image.ndim == 4 else None)
        if not with_input:
            return full, decoded, probs
        shown = dl.decode(inputs if isinstance(inputs, tuple) else (inputs,))
        return (shown[0][0] if len(shown) == 1 else tuple(x[0] for x in shown)), full, decoded, probs

    def show_results(self, ds_idx: int = 1, dl: Any = None, max_n: int = 9, shuffle: bool = True,
                     **kwargs: Any) -> Any:
        """Show predictions beside targets for one batch, the way the application shows its data.

        Returns:
            The figure for images (titles ``prediction/actual``, shown once in a notebook); None for tables.

        Raises:
            NotImplementedError: when the data has no way to show results (plain tensors).
        """
        dl = dl if dl is not None else self.dls[ds_idx].new(shuffle=shuffle, drop_last=False)
        show = getattr(dl, "show_results", None)
        if show is None:
            raise NotImplementedError("This data cannot show results: it was built from plain tensors. Build it with "
                                      "an application factory (ImageDataLoaders, TabularDataLoaders, ...)")
        inputs, preds, targs, decoded = self._preds_for_batch(dl.one_batch())
        full = (*(inputs if isinstance(inputs, tuple) else (inputs,)), targs)
        return show(self.dls, full, preds, decoded, max_n=max_n, **kwargs)

    def _preds_for_batch(self, batch: tuple) -> tuple:
        """Predictions for one batch already on the device (for loaders that are not tensor slices)."""
        batch = as_members(batch)
        n_inp = self.dls.n_inp or max(1, len(batch) - 1)
        self.model.to(self.dls.device).eval()
        with torch.no_grad():
            preds = self.model(*batch[:n_inp]).float()
        act = getattr(self.loss_func, "activation", None)
        preds = act(preds) if act is not None else preds
        decodes = getattr(self.loss_func, "decodes", None)
        decoded = decodes(preds) if decodes is not None else preds
        inputs = batch[:n_inp]
        targs = batch[n_inp] if len(batch) > n_inp else None
        return (to_cpu(inputs if n_inp > 1 else inputs[0]), to_cpu(preds), to_cpu(targs), to_cpu(decoded))

    def decode_prediction(self, decoded: torch.Tensor, input_hw: tuple[int, int] | None = None) -> Any:
        """The human-readable prediction: a class name, a list of labels, or the value itself.

        Args:
            decoded: the decoded prediction of one item.
            input_hw: the (height, width) of the image the model saw, for predictions in its pixels (points).
        """
        custom = getattr(self.dls, "decode_prediction", None)
        if custom is not None:
            return custom(decoded) if input_hw is None else custom(decoded, input_hw=input_hw)
        vocab = getattr(self.dls, "vocab", None)
        if vocab is None:
            return decoded
        if decoded.ndim == 0 and not decoded.is_floating_point():
            return vocab[int(decoded)]
        if decoded.ndim == 1 and decoded.dtype == torch.bool:
            return [vocab[i] for i in torch.nonzero(decoded).flatten().tolist()]
        return decoded
