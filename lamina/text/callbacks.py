"""Callbacks of recurrent text models: resetting their state, and AR/TAR regularisation.

Example:
    >>> learn = Learner(dls, model, cbs=rnn_cbs(alpha=2., beta=1.))   # what the text learners add themselves
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..callbacks.core import Callback

__all__ = ["ModelResetter", "RNNCallback", "RNNRegularizer", "rnn_cbs"]


def _reset(model: nn.Module) -> None:
    reset = getattr(model, "reset", None)
    if callable(reset):
        reset()


class ModelResetter(Callback):
    """Reset the model's recurrent state before each training and validation pass, and after the fit
    (a language model's rows would otherwise continue the previous pass's text)."""

    def before_train(self) -> None:
        _reset(self.learn.model)

    def before_validate(self) -> None:
        _reset(self.learn.model)

    def after_fit(self) -> None:
        _reset(self.learn.model)


def _split_outputs(learn: Any) -> tuple[Any, Any] | None:
    """For a prediction ``(output, raw, dropped)``: make the output the prediction, return ``(raw, dropped)``."""
    pred = learn.pred
    if not (isinstance(pred, (tuple, list)) and len(pred) == 3):
        return None
    output, raw, dropped = (o[-1] if isinstance(o, (tuple, list)) else o for o in pred)
    learn.pred = output
    return raw, dropped


class RNNCallback(Callback):
    """For models that return ``(output, raw_outputs, dropped_outputs)``, as the fastai book's hand-written LSTM
    language models do: the output becomes the prediction the loss and metrics see, the two others are kept for
    `RNNRegularizer` until the end of the batch. A list of per-layer outputs gives its last layer. Other
    predictions pass unchanged (lamina's own text models keep their outputs on the head instead).
    """

    order = -5  # before anything that reads the prediction (mixed precision casts it at order 10)

    def __init__(self) -> None:
        super().__init__()
        self.raw_out: Any = None
        self.out: Any = None

    def after_pred(self) -> None:
        split = _split_outputs(self.learn)
        if split is not None:
            self.raw_out, self.out = split

    def after_batch(self) -> None:
        self.raw_out = self.out = None


class RNNRegularizer(Callback):
    """Activation regularisation (AR) and temporal activation regularisation (TAR), training only.

    ``loss += alpha · mean(dropped_out²) + beta · mean((raw_out[:, t+1] − raw_out[:, t])²)``, read from the
    last recurrent layer's outputs that the model's head keeps (``rnn_outputs``), or else from the model's output
    ``(output, raw, dropped)``, split by `RNNCallback` or, when the learner has none, by this callback (in
    training and validation alike; the terms are added in training only). AR keeps activations small,
    TAR keeps them from jumping between time steps (Merity et al. 2017).

    Args:
        alpha: the AR weight.
        beta: the TAR weight.
    """

    order = 1

    def __init__(self, alpha: float = 0.0, beta: float = 0.0):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self._head: Any = None
        self._split: RNNCallback | None = None
        self._own: tuple[Any, Any] | None = None  # what after_pred split when no RNNCallback runs

    def before_fit(self) -> None:
        self._head = next((m for m in self.learn.model.modules() if hasattr(m, "rnn_outputs")), None)
        self._split = next((cb for cb in self.learn.cbs if isinstance(cb, RNNCallback)), None)

    def after_pred(self) -> None:
        if self._split is None:  # a plain Learner given this callback alone, as the book's chapter 12 does
            self._own = _split_outputs(self.learn)

    def after_loss(self) -> None:
        outputs = getattr(self._head, "rnn_outputs", None)
        if outputs is None and self._split is not None and self._split.raw_out is not None:
            outputs = (self._split.raw_out, self._split.out)
        outputs = self._own if outputs is None else outputs
        if outputs is None or not self.learn.training or not (self.alpha or self.beta):
            return
        raw, dropped = outputs
        extra = 0.0
        if self.alpha:
            extra = extra + self.alpha * dropped.float().pow(2).mean()
        if self.beta and raw.shape[1] > 1:  # TAR needs two time steps
            extra = extra + self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        self.learn.loss_grad = self.learn.loss_grad + extra

    def after_batch(self) -> None:
        self._own = None
        if self._head is not None:
            self._head.rnn_outputs = None  # the activations are not needed past the step

    def after_fit(self) -> None:
        self._head = self._split = self._own = None


def rnn_cbs(alpha: float = 0.0, beta: float = 0.0) -> list[Callback]:
    """The callbacks a recurrent text model trains with: `ModelResetter`, `RNNCallback` and `RNNRegularizer`."""
    return [ModelResetter(), RNNCallback(), RNNRegularizer(alpha=alpha, beta=beta)]
