"""Batch prediction for shipped models: many inputs through one ``dls.test_dl`` and ``get_preds`` pass, each
result decoded for people and programs. `lamina predict` and `lamina serve` are built on it.

Inputs by application (`application(learn)`):

* ``'image'``: file paths, bytes or PIL images (what ``dls.test_dl`` takes);
* ``'tabular'``: rows as dicts of column values (missing values as None or NaN);
* ``'collab'``: dicts with the user and item columns, or ``(user, item)`` pairs.

`predict_each` keeps going when some inputs fail: it returns the exception in their place.

Example:
    >>> learn = load_learner("pets.pkl")
    >>> for result in predict_each(learn, ["a.jpg", "b.jpg"]): print(result.to_dict())
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Prediction", "application", "target_kind", "predict_batch", "predict_each", "mask_png", "overlay_png"]

_APPLICATIONS = {("image",): "image", ("tab_cat", "tab_cont"): "tabular", ("collab",): "collab"}


@dataclass
class Prediction:
    """One decoded prediction.

    Attributes:
        prediction: a class name, a list of labels (multi-label), a value or a list of values (regression,
            ratings); None for a segmentation mask.
        probability: the predicted class's probability; for a mask, the mean over pixels of the winning code's.
        probabilities: each class's probability (classification and multi-label).
        pixel_share: for a mask, the share of the pixels given to each code.
        mask: for a mask, the codes, ``(H, W)`` uint8, at the size the model saw.
        image: for a mask, the input as the model saw it, ``(H, W, 3)`` uint8 (when asked for).
    """

    prediction: Any = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    pixel_share: dict[str, float] | None = None
    mask: np.ndarray | None = None
    image: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe fields (arrays left out), None fields dropped."""
        fields = {"prediction": self.prediction, "probability": self.probability,
                  "probabilities": self.probabilities, "pixel_share": self.pixel_share}
        return {key: value for key, value in fields.items() if value is not None}


def application(learn: Any) -> str:
    """``'image'``, ``'tabular'`` or ``'collab'``, from the kinds of the data's inputs.

    Raises:
        ValueError: for other data (plain tensors ...), naming its input kinds.
    """
    dls = learn.dls
    kinds = tuple(getattr(dls.valid, "kinds", ()) or ())[:dls.n_inp or 1]
    if kinds not in _APPLICATIONS:
        raise ValueError(f"this model's inputs are {list(kinds) or 'plain tensors'}; lamina predicts and serves "
                         "image, tabular and collab models")
    return _APPLICATIONS[kinds]


def target_kind(learn: Any) -> str | None:
    """The kind of the target: ``'category'``, ``'multicategory'``, ``'mask'``, ``'regression'`` (or None)."""
    kinds, n_inp = tuple(learn.dls.valid.kinds or ()), learn.dls.n_inp or 1
    return kinds[n_inp] if len(kinds) > n_inp else None


def _test_dl(learn: Any, items: Sequence, bs: int | None, num_workers: int) -> Any:
    app = application(learn)
    size = {"bs": bs} if bs else {}
    if app == "image":
        return learn.dls.test_dl(list(items), num_workers=num_workers, **size)
    import pandas as pd
    if app == "tabular":
        return learn.dls.test_dl(pd.DataFrame(list(items)), **size)
    if all(isinstance(item, dict) for item in items):
        items = pd.DataFrame(list(items))
    return learn.dls.test_dl(items, **size)


def predict_batch(learn: Any, items: Sequence, bs: int | None = None, num_workers: int = 0,
                  with_image: bool = False) -> list[Prediction]:
    """Predict ``items`` (see the module for what each application takes) in one pass.

    Args:
        learn: the learner (e.g. from ``load_learner``).
        items: the inputs.
        bs: the batch size (default: the data's validation batch size).
        num_workers: loader worker processes for images (0: decode in this process).
        with_image: for segmentation, also return each input as the model saw it (for overlays).

    Raises:
        Whatever the data pipeline raises for a bad input (the whole batch fails: see `predict_each`).
    """
    if not len(items):
        return []
    dl = _test_dl(learn, items, bs, num_workers)
    kind = target_kind(learn)
    with_input = with_image and kind == "mask"
    with learn.no_bar():
        out = learn.get_preds(dl=dl, with_input=with_input, with_decoded=True)
    inputs, (preds, _, decoded) = (out[0], out[1:]) if with_input else (None, out)
    images = _as_uint8_images(dl.decode((inputs,))[0]) if with_input else None
    vocab = [str(v) for v in learn.dls.vocab] if getattr(learn.dls, "vocab", None) is not None else None
    return [_decode(kind, vocab, preds[i], decoded[i], None if images is None else images[i])
            for i in range(len(preds))]


def predict_each(learn: Any, items: Sequence, **kwargs: Any) -> list[Prediction | Exception]:
    """`predict_batch`, with the exception in place of the prediction of each input that fails.

    A failing batch is split in halves until the failing inputs stand alone: a few bad files among many
    cost a few extra passes, not one pass per input.
    """
    try:
        return list(predict_batch(learn, items, **kwargs))
    except Exception as e:  # noqa: BLE001 - reported per input, which is the point
        if len(items) <= 1:
            return [e] * len(items)
        half = len(items) // 2
        return predict_each(learn, items[:half], **kwargs) + predict_each(learn, items[half:], **kwargs)


def _decode(kind: str | None, vocab: list[str] | None, probs: torch.Tensor, decoded: torch.Tensor,
            image: np.ndarray | None) -> Prediction:
    probs = probs.float()
    if kind == "category" and vocab is not None:
        index = int(decoded)
        return Prediction(vocab[index], float(probs[index]), dict(zip(vocab, map(float, probs.tolist()))))
    if kind == "multicategory" and vocab is not None:
        labels = [vocab[i] for i in torch.nonzero(decoded.bool()).flatten().tolist()]
        return Prediction(labels, None, dict(zip(vocab, map(float, probs.tolist()))))
    if kind == "mask":
        codes = decoded.to(torch.uint8).numpy()
        names = vocab or [str(i) for i in range(probs.shape[0])]
        counts = np.bincount(codes.ravel(), minlength=len(names)) / codes.size
        return Prediction(None, float(probs.max(0).values.mean()), None, dict(zip(names, map(float, counts))),
                          codes, image)
    values = probs.flatten().tolist()
    return Prediction(values[0] if len(values) == 1 else values)


def _as_uint8_images(images: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1], ``(N, C, H, W)`` → uint8 ``(N, H, W, 3)``."""
    images = images.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images[:, :3].permute(0, 2, 3, 1).numpy()


def _palette(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours (hues spaced by the golden angle)."""
    import colorsys
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.85, 0.95)]
                     for i in range(n)], dtype=np.uint8)


def mask_png(mask: np.ndarray) -> bytes:
    """A mask of codes as an 8-bit greyscale PNG (pixel value = code), as segmentation labels are stored."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_png(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> bytes:
    """The image with each pixel tinted by its code's colour, as a PNG (both at the model's size)."""
    from PIL import Image
    colours = _palette(int(mask.max()) + 1)[mask]
    blended = (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round()
    buffer = io.BytesIO()
    Image.fromarray(blended.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
