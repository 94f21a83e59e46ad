"""Text data: `TextBlock` for the data block API and `TextDataLoaders` (``from_folder``, ``from_df``, ``from_csv``).

A `TextBlock` is a `Tokenizer` then a `Numericalize` (fitted on the training texts); its DataLoaders are
`TextDataLoaders`, whose loaders are an `LMDataLoader` (``is_lm=True``: the texts as one stream, the target the
next token) or a `SortedDL` (a classifier's padded, length-sorted batches). For a classifier ``dls.vocab`` is
``[token vocabulary, classes]`` (fastai's layout) and ``dls.n_out`` the number of classes; for a language model
``dls.vocab`` is the token vocabulary.

Example:
    >>> dls = TextDataLoaders.from_folder(untar_data(URLs.IMDB), valid='test')
    >>> dls_lm = DataBlock(blocks=TextBlock.from_folder(path, is_lm=True), get_items=get_text_files,
    ...                    splitter=RandomSplitter(0.1)).dataloaders(path, path=path, bs=128, seq_len=80)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..data.block import CategoryBlock, DataBlock, MultiCategoryBlock, TransformBlock
from ..data.csvfiles import read_csv
from ..data.files import get_text_files
from ..data.loaders import DataLoaders
from ..data.splitters import ColReader, ColSplitter, GrandparentSplitter, RandomSplitter, parent_label
from ..losses import CrossEntropyLossFlat
from ..registry import register
from .core import FLD, PAD
from .loaders import LMDataLoader, SortedDL
from .show import show_text_batch, show_text_results
from .tokenizer import Tokenizer, join_texts
from .vocab import Numericalize, ReverseText

__all__ = ["TextBlock", "TextDataLoaders", "TextColumns", "text_inference_dls"]


class TextColumns:
    """A row's text: its ``cols`` joined as `join_texts` joins them (``xxfld <n>`` markers if ``mark_fields``)."""

    def __init__(self, cols: Sequence[Any], mark_fields: bool = False):
        self.cols, self.mark_fields = list(cols), mark_fields

    def __call__(self, row: Any) -> str:
        parts = []
        for i, col in enumerate(self.cols, start=1):
            marker = f"{FLD} {i} " if self.mark_fields else ""
            parts.append((marker if i == 1 else " " + marker) + str(row[col]))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"TextColumns({self.cols})"


class TextBlock(TransformBlock):
    """Texts for a model: `Tokenizer` then `Numericalize` (and reversed if ``backwards``).

    Args:
        tok_tfm: the `Tokenizer` (see `from_df`, `from_folder`).
        vocab: a fixed token vocabulary (e.g. ``dls_lm.vocab``, so a classifier can load the LM's encoder).
        is_lm: language-model data (the target is the next token).
        seq_len: the language model's window, or the classifier's padding chunk.
        backwards: reverse the texts.
        min_freq, max_vocab: see `Numericalize`.
    """

    def __init__(self, tok_tfm: Tokenizer, vocab: Sequence[str] | None = None, is_lm: bool = False, seq_len: int = 72,
                 backwards: bool = False, min_freq: int = 3, max_vocab: int = 60000, **kwargs: Any):
        type_tfms = [tok_tfm, Numericalize(vocab, min_freq=min_freq, max_vocab=max_vocab, **kwargs)]
        if backwards:
            type_tfms.append(ReverseText())
        super().__init__(type_tfms=type_tfms, kind="lm_text" if is_lm else "text", dls_type=TextDataLoaders,
                         dls_kwargs={"seq_len": seq_len, "is_lm": is_lm, "tokenizer": tok_tfm, "backwards": backwards})

    @classmethod
    def from_df(cls, text_cols: Any, vocab: Sequence[str] | None = None, is_lm: bool = False, seq_len: int = 72,
                backwards: bool = False, min_freq: int = 3, max_vocab: int = 60000, **kwargs: Any) -> "TextBlock":
        """A block over DataFrame rows (``get_x=ColReader(text_cols)``); ``kwargs`` go to `Tokenizer.from_df`."""
        return cls(Tokenizer.from_df(text_cols, **kwargs), vocab=vocab, is_lm=is_lm, seq_len=seq_len,
                   backwards=backwards, min_freq=min_freq, max_vocab=max_vocab)

    @classmethod
    def from_folder(cls, path: str | Path, vocab: Sequence[str] | None = None, is_lm: bool = False, seq_len: int = 72,
                    backwards: bool = False, min_freq: int = 3, max_vocab: int = 60000, **kwargs: Any) -> "TextBlock":
        """A block over text files under ``path``, tokenized now (or read from the cache); ``kwargs`` go to
        `Tokenizer.from_folder`."""
        return cls(Tokenizer.from_folder(path, **kwargs), vocab=vocab, is_lm=is_lm, seq_len=seq_len,
                   backwards=backwards, min_freq=min_freq, max_vocab=max_vocab)


def _target_kind(kinds: Sequence[str]) -> str | None:
    return kinds[1] if len(kinds) > 1 else None


class TextDataLoaders(DataLoaders):
    """Text loaders, plus what a text learner needs: the `Tokenizer` and `Numericalize` (``tokenizer``,
    ``numericalize``), ``text_vocab``, ``is_lm``, ``seq_len``; `test_dl` takes raw texts."""

    def __init__(self, *loaders: Any, tokenizer: Tokenizer | None = None, numericalize: Numericalize | None = None,
                 is_lm: bool = False, seq_len: int = 72, backwards: bool = False, classes: Sequence | None = None,
                 target_kind: str | None = None, **kwargs: Any):
        super().__init__(*loaders, **kwargs)
        self.tokenizer, self.numericalize, self.is_lm = tokenizer, numericalize, is_lm
        self.seq_len, self.backwards, self.target_kind = seq_len, backwards, target_kind
        self.classes = list(classes) if classes is not None else None
        self.unexportable: str | None = None

    @property
    def text_vocab(self) -> list[str]:
        """The token vocabulary."""
        return self.numericalize.vocab

    # --- building ----------------------------------------------------------------------------------------
    @classmethod
    def from_datasets(cls, dsets: Any, path: str | Path = ".", bs: int = 64, val_bs: int | None = None,
                      seq_len: int = 72, is_lm: bool = False, tokenizer: Tokenizer | None = None,
                      backwards: bool = False, shuffle: bool = True, device: Any = None, after_batch: Any = None,
                      loss_func: Any = None, drop_last: bool | None = None, pad_first: bool = True,
                      seed: int | None = None, num_workers: int | None = None, **kwargs: Any) -> "TextDataLoaders":
        """Text loaders over the training and validation splits of ``dsets`` (what ``DataBlock.dataloaders`` calls
        for a `TextBlock`). ``num_workers`` is accepted and ignored: batches are slices of tensors built once.

        Raises:
            TypeError: for unknown keyword arguments, or datasets whose first member is not numericalized text.
        """
        if kwargs:
            raise TypeError(f"Unknown arguments {sorted(kwargs)} for text DataLoaders; known: bs, val_bs, seq_len, "
                            "shuffle, device, drop_last, pad_first, seed, after_batch, loss_func, num_workers")
        num = dsets.type_steps[0]
        if not isinstance(num, Numericalize):
            raise TypeError("Text DataLoaders need the first block to be a TextBlock")
        common = dict(device=device, after_batch=list(after_batch or []), kinds=dsets.kinds)
        if is_lm:
            train = LMDataLoader(dsets.train, bs=bs, seq_len=seq_len, shuffle=shuffle, seed=seed, **common)
            valid = LMDataLoader(dsets.valid, bs=val_bs or bs, seq_len=seq_len, split_idx=1, seed=seed, **common)
        else:
            dsets.check_classes()
            pad = dict(pad_idx=num.pad_idx, pad_first=pad_first, seq_len=seq_len, seed=seed, **common)
            train = SortedDL(dsets.train, bs=bs, shuffle=shuffle, drop_last=shuffle if drop_last is None else drop_last,
                             **pad)
            valid = SortedDL(dsets.valid, bs=val_bs or bs, split_idx=1, **pad)
        classes = None if is_lm else [c.item() if hasattr(c, "item") else c for c in (dsets.vocab or [])]
        config = loss_func if isinstance(loss_func, dict) else (dsets.loss_config if loss_func is None else None)
        dls = cls(train, valid, path=path, tokenizer=tokenizer, numericalize=num, is_lm=is_lm, seq_len=seq_len,
                  backwards=backwards, classes=classes, target_kind=_target_kind(dsets.kinds),
                  vocab=num.vocab if is_lm else [num.vocab, classes], n_out=len(num.vocab) if is_lm else dsets.c,
                  loss_func=CrossEntropyLossFlat() if is_lm else (None if isinstance(loss_func, dict) else loss_func),
                  n_inp=1)
        dls.loss_config = None if is_lm else config
        dls._finish(pad_first, bs)
        return dls

    def _finish(self, pad_first: bool, bs: int) -> None:
        """Show functions on the loaders, and the inference description used by ``learn.export``."""
        for dl in self.loaders:
            dl.show, dl.show_results = show_text_batch, show_text_results
        try:
            tok_config = self.tokenizer.to_config() if self.tokenizer is not None else None
        except ValueError as e:
            self.unexportable, tok_config = str(e), None
        if tok_config is None:
            self.unexportable = self.unexportable or "these text DataLoaders have no lamina Tokenizer to describe"
            return
        self.inference = {"builder": "text_inference_dls", "kwargs": {
            "text_vocab": list(self.text_vocab), "classes": self.classes, "is_lm": self.is_lm,
            "seq_len": self.seq_len, "pad_first": pad_first, "backwards": self.backwards, "tokenizer": tok_config,
            "target_kind": self.target_kind, "bs": bs, "path": str(self.path)}}

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int | None = None, vocab: Sequence | None = None, text_vocab: Sequence[str] | None = None,
                    is_lm: bool = False, tok_tfm: Tokenizer | None = None, seq_len: int = 72, backwards: bool = False,
                    **kwargs: Any) -> "TextDataLoaders":
        """Texts in ``path/<train>/<label>/*.txt`` and ``path/<valid>/<label>/*.txt`` (or a random ``valid_pct``).

        Args:
            path: the folder.
            train, valid: the sub-folders of the two splits (ignored with ``valid_pct``).
            valid_pct, seed: a random split of every text file instead.
            vocab: the classes; text_vocab: a fixed token vocabulary.
            is_lm: language-model data; tok_tfm: a `Tokenizer` (default `Tokenizer.from_folder`).
            seq_len, backwards: see `TextBlock`.
            **kwargs: loader arguments (``bs``, ``val_bs``, ``shuffle``, ``device``, ``seed`` ...).
        """
        path = Path(path)
        folders = [train, valid] if valid_pct is None else None
        splitter = GrandparentSplitter(train, valid) if valid_pct is None else RandomSplitter(valid_pct, seed=seed)
        tok = tok_tfm if tok_tfm is not None else Tokenizer.from_folder(path, folders=folders)
        blocks = [TextBlock(tok, text_vocab, is_lm, seq_len, backwards)]
        blocks += [] if is_lm else [CategoryBlock(vocab=vocab)]
        dblock = DataBlock(blocks=blocks, get_items=functools.partial(get_text_files, folders=folders),
                           splitter=splitter, get_y=None if is_lm else parent_label)
        return dblock.dataloaders(path, path=path, seq_len=seq_len, **kwargs)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = None,
                text_col: Any = 0, label_col: Any = 1, label_delim: str | None = None, y_block: Any = None,
                text_vocab: Sequence[str] | None = None, is_lm: bool = False, valid_col: Any = None,
                tok_tfm: Tokenizer | None = None, tok_text_col: str = "text", seq_len: int = 72,
                backwards: bool = False, cache_dir: str | Path | None = None, **kwargs: Any) -> "TextDataLoaders":
        """Texts in the ``text_col`` column(s) of ``df`` and labels in ``label_col``.

        Args:
            df: one row per text.
            path: the folder of saved models and exports.
            valid_pct, seed: a random split; valid_col: a boolean column marking the validation rows instead.
            text_col: the text column(s) (name or position; several are joined with ``xxfld`` markers).
            label_col, label_delim: the label column(s), and a separator for several labels in one cell.
            y_block: the target block (default `CategoryBlock`, `MultiCategoryBlock` for several label columns).
            text_vocab, is_lm, tok_tfm, seq_len, backwards: see `TextBlock` and `from_folder`.
            tok_text_col: accepted for fastai compatibility (the texts are read where they are).
            cache_dir: a folder for the tokenization cache (``from_csv`` uses ``<csv stem>_tok`` beside the file).
            **kwargs: loader arguments.

        Raises:
            KeyError: naming a missing text column.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"`df` must be a pandas DataFrame; received: {type(df).__name__}")
        cols = list(text_col) if isinstance(text_col, (list, tuple)) else [text_col]
        names = [df.columns[c] if isinstance(c, int) and c not in df.columns else c for c in cols]
        tok = tok_tfm if tok_tfm is not None else Tokenizer.from_df(names, cache_dir=cache_dir)
        tok.prepare(join_texts(df, names, tok.mark_fields))  # every text in one batch (parallel, cached)
        blocks: list = [TextBlock(tok, text_vocab, is_lm, seq_len, backwards)]
        if not is_lm:
            several = isinstance(label_col, (list, tuple)) and len(label_col) > 1
            blocks += list(y_block) if isinstance(y_block, (list, tuple)) else [
                y_block if y_block is not None else (MultiCategoryBlock if several else CategoryBlock)]
        splitter = RandomSplitter(valid_pct, seed=seed) if valid_col is None else ColSplitter(valid_col)
        dblock = DataBlock(blocks=blocks, get_x=TextColumns(names, tok.mark_fields), splitter=splitter,
                           get_y=None if is_lm else ColReader(label_col, label_delim=label_delim))
        return dblock.dataloaders(df, path=path, seq_len=seq_len, **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str = "labels.csv", header: Any = "infer",
                 delimiter: str | None = None, **kwargs: Any) -> "TextDataLoaders":
        """`from_df` on the CSV file ``path/csv_fname``; the tokens are cached beside it (``<csv stem>_tok/``)."""
        path = Path(path)
        csv = path / csv_fname
        if not csv.exists():
            raise FileNotFoundError(f"No CSV file at {csv}: pass the folder as `path` and the file name as `csv_fname`")
        kwargs.setdefault("cache_dir", path / f"{Path(csv_fname).stem}_tok")
        sep = {} if delimiter is None else {"delimiter": delimiter}
        return cls.from_df(read_csv(csv, arg="csv_fname", header=header, **sep), path=path, **kwargs)

    # --- new texts ---------------------------------------------------------------------------------------
    def encode_text(self, text: Any) -> torch.Tensor:
        """The token ids of one text (tokenized, numericalized, reversed if ``backwards``)."""
        return self._encode_many([text])[0]

    def _encode_many(self, texts: Sequence[Any]) -> list[torch.Tensor]:
        ids = [self.numericalize(t) for t in self.tokenizer.encode_many(texts)]
        return [t.flip(0) for t in ids] if self.backwards else ids

    def decode_text(self, ids: torch.Tensor, trunc_at: int | None = None) -> str:
        """The tokens of ``ids`` joined (padding removed; the first ``trunc_at`` tokens only)."""
        tokens = [t for t in self.numericalize.decode(ids) if t != PAD]
        return self.tokenizer.decode(tokens[:trunc_at] if trunc_at else tokens)

    def _texts_of(self, items: Any) -> tuple[list, list | None]:
        if isinstance(items, pd.DataFrame):
            cols = self.tokenizer.text_cols or [items.columns[0]]
            return join_texts(items, cols, self.tokenizer.mark_fields), None
        items = [items] if isinstance(items, (str, Path)) else list(items)
        return items, None

    def test_dl(self, items: Any, with_labels: bool = False, bs: int | None = None, **kwargs: Any) -> Any:
        """A loader over new texts (a text, a list of texts or text files, or a DataFrame with the text columns),
        in their order. ``with_labels`` takes ``(text, label)`` pairs. ``kwargs`` (``num_workers`` ...) are ignored."""
        if with_labels:
            pairs = list(items)
            texts, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        else:
            texts, labels = self._texts_of(items)
        docs = self._encode_many(texts)
        if self.is_lm:
            return self._copy_show(self.valid.new(docs, docs=docs, bs=bs or self.valid.bs))
        targets = None if labels is None else torch.tensor([self.classes.index(lbl) for lbl in labels])
        return self._copy_show(self.valid.new(docs, docs=docs, targets=targets, bs=bs or self.valid.bs))

    def _copy_show(self, dl: Any) -> Any:
        dl.show, dl.show_results, dl.dls = show_text_batch, show_text_results, self
        return dl

    def decode_prediction(self, decoded: torch.Tensor) -> Any:
        """A class index → its label; a boolean vector → the list of labels; anything else as it is."""
        if self.classes is None:
            return decoded
        if decoded.ndim == 0 and not decoded.is_floating_point():
            return self.classes[int(decoded)]
        if decoded.ndim == 1 and decoded.dtype == torch.bool:
            return [self.classes[i] for i in torch.nonzero(decoded).flatten().tolist()]
        return decoded


@register("data")
def text_inference_dls(text_vocab: Sequence[str], classes: Sequence | None = None, is_lm: bool = False,
                       seq_len: int = 72, pad_first: bool = True, backwards: bool = False,
                       tokenizer: dict | None = None, target_kind: str | None = None, bs: int = 64,
                       path: str = ".") -> TextDataLoaders:
    """Empty text loaders holding the tokenizer and vocabularies: what a loaded learner needs to predict."""
    num = Numericalize(vocab=list(text_vocab))
    tok = Tokenizer.from_config(tokenizer) if tokenizer is not None else Tokenizer()
    if is_lm:
        loaders = [LMDataLoader([], docs=[], bs=bs, seq_len=seq_len, device="cpu", split_idx=i) for i in (0, 1)]
    else:
        loaders = [SortedDL([], docs=[], bs=bs, pad_idx=num.pad_idx, pad_first=pad_first, seq_len=seq_len,
                            device="cpu", split_idx=i) for i in (0, 1)]
    classes = list(classes) if classes is not None else None
    dls = TextDataLoaders(*loaders, path=path, tokenizer=tok, numericalize=num, is_lm=is_lm, seq_len=seq_len,
                          backwards=backwards, classes=classes, target_kind=target_kind,
                          vocab=num.vocab if is_lm else [num.vocab, classes],
                          n_out=len(num.vocab) if is_lm else len(classes or []), n_inp=1)
    dls._finish(pad_first, bs)
    return dls
