"""lamina.data.summary: `DataBlock.summary` prints each step of one sample and one batch and names the one that
fails; `describe_value` says what a value is in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.data.block import CategoryBlock, DataBlock, TransformBlock
from lamina.data.splitters import IndexSplitter
from lamina.data.summary import describe_value
from lamina.data.transforms import BatchTransform, ItemTransform


def features(i: int) -> torch.Tensor:
    return torch.tensor([float(i), float(i % 3)])


def label(i: int) -> str:
    return "odd" if i % 2 else "even"


def block(**kwargs) -> DataBlock:
    return DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=features, get_y=label,
                     splitter=IndexSplitter([0, 1]), **kwargs)


def test_describe_value():
    assert describe_value(torch.zeros(2, 3, dtype=torch.uint8)) == "Tensor of shape (2, 3), dtype uint8"
    assert describe_value(Image.fromarray(np.zeros((4, 6, 3), np.uint8))) == "Image mode=RGB size=6x4"
    assert describe_value((torch.ones(1), "cat")) == "(Tensor of shape (1,), dtype float32, 'cat')"
    long = describe_value("x" * 500)
    assert len(long) == 123 and long.endswith("...")


class Twice(ItemTransform):
    order = 2

    def encodes(self, sample, split_idx):
        return (sample[0] * 2, *sample[1:])


class AddTen(BatchTransform):
    def encodes(self, batch, kinds, split_idx):
        return (batch[0] + 10, *batch[1:])


def test_summary_shows_every_step_in_order(capsys):
    block(item_tfms=Twice(), batch_tfms=AddTen()).summary(list(range(6)), bs=2)
    out = capsys.readouterr().out
    expected = ["Setting-up type transforms pipelines", "Found 6 items", "2 datasets of sizes 4,2",
                "Building one sample", "Pipeline ('raw'): features", "applying features gives",
                "Tensor of shape (2,), dtype float32", "Pipeline ('category'): label -> Categorize",
                "applying Categorize gives", "Building one batch", "Pipeline: Twice", "applying Twice gives",
                "Adding the next 1 samples", "Collating items in a batch", "Pipeline: AddTen", "applying AddTen gives"]
    positions = [out.index(text) for text in expected]
    assert positions == sorted(positions)


def test_summary_names_a_failing_item_transform(capsys):
    class Broken(ItemTransform):
        def encodes(self, sample, split_idx):
            raise RuntimeError("broken on purpose")

    with pytest.raises(RuntimeError, match="broken on purpose"):
        block(item_tfms=Broken()).summary(list(range(6)), bs=2)
    assert "Error! item transform `Broken` failed" in capsys.readouterr().out


def test_summary_names_a_failing_batch_transform(capsys):
    class Refuses(BatchTransform):
        def encodes(self, batch, kinds, split_idx):
            raise ValueError("no batches today")

    with pytest.raises(ValueError, match="no batches today"):
        block(batch_tfms=Refuses()).summary(list(range(6)), bs=2)
    out = capsys.readouterr().out
    assert "Error! batch transform `Refuses` failed" in out and "Collating items in a batch" in out


def test_summary_names_a_failing_getter(capsys):
    def bad_label(i):
        raise KeyError(f"no label for {i}")

    broken = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=features, get_y=bad_label,
                       splitter=IndexSplitter([0]))
    with pytest.raises(KeyError, match=r"step `bad_label` of the 'category' pipeline failed on item 0 "
                                       r"\(validation set\): KeyError"):
        broken.summary(list(range(3)))
    assert "Setting-up type transforms pipelines" in capsys.readouterr().out


def test_summary_of_empty_splits_says_so():
    empty = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=features, get_y=label,
                      splitter=lambda items: ([], []))
    with pytest.raises(ValueError, match="Both datasets are empty: check get_items and the splitter"):
        empty.summary(list(range(3)))
