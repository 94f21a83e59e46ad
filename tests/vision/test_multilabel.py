"""Multi-label classification end to end, as the book's chapter 6 (PASCAL) writes it, on tiny images made here.

Only the import line differs from the book; resnet18's weights are a random state dict in an offline torch-hub
cache, so the real pretrained path runs without a network.
"""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lamina.testing import synth_classification
from lamina.vision.all import *  # noqa: F403  (the book's star import)

from ..fresh import fresh_json

RESNET18_FILE = "resnet18-f37072fd.pth"
CLASSES = ("car", "cat", "dog")


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    import torchvision.models as tvm
    path = tmp_path_factory.mktemp("weights") / RESNET18_FILE
    torch.save(tvm.resnet18().state_dict(), path)
    return path


@pytest.fixture
def hub_resnet18(offline_hub, resnet18_file):
    (offline_hub / RESNET18_FILE).symlink_to(resnet18_file)


@pytest.fixture
def pascal(tmp_path):
    """A PASCAL-like folder and DataFrame: ``fname``, space-separated ``labels``, ``is_valid``. Each class is a
    colour channel, so the labels can be learnt."""
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    rows = []
    for i in range(16):
        on = [k for k in range(3) if rng.random() < 0.5] or [i % 3]
        pixels = np.full((16, 16, 3), 20, np.uint8)
        pixels[..., on] = 230
        Image.fromarray(pixels).save(tmp_path / "train" / f"{i:03d}.png")
        rows.append((f"{i:03d}.png", " ".join(CLASSES[k] for k in on), i % 4 == 0))
    return tmp_path, pd.DataFrame(rows, columns=["fname", "labels", "is_valid"])


def _book_dblock(path, **kwargs):
    def get_x(r): return path/'train'/r['fname']  # noqa: E704
    def get_y(r): return r['labels'].split(' ')  # noqa: E704
    def splitter(df):
        train = df.index[~df['is_valid']].tolist()
        valid = df.index[df['is_valid']].tolist()
        return train, valid
    return DataBlock(blocks=(ImageBlock, MultiCategoryBlock), splitter=splitter, get_x=get_x, get_y=get_y,
                     item_tfms=RandomResizedCrop(16, min_scale=0.35), **kwargs)


@pytest.mark.slow
def test_chapter6_pascal_call_shapes(pascal, hub_resnet18, tmp_path):
    path, df = pascal
    dblock = _book_dblock(path)
    dsets = dblock.datasets(df)
    _, y = dsets.train[0]
    assert y.dtype == torch.float32 and y.shape == (3,)
    idxs = torch.where(dsets.train[0][1] == 1.)[0]
    assert list(dsets.train.vocab[idxs]) == df['labels'][1].split(' ')  # row 0 is in validation

    dls = dblock.dataloaders(df, bs=4, num_workers=0)
    axes = dls.show_batch(nrows=1, ncols=3).axes
    first = dls.decode_prediction(dls.one_batch()[1][0])
    assert axes[0].get_title() == ";".join(first)  # label lists as titles
    learn = vision_learner(dls, resnet18, metrics=partial(accuracy_multi, thresh=0.2))
    assert isinstance(learn.loss_func, BCEWithLogitsLossFlat)
    xb, _ = dls.train.one_batch()
    activs = learn.model(xb)
    assert activs.shape == (4, 3)
    learn.fine_tune(1, base_lr=3e-3, freeze_epochs=1)
    assert learn.recorder.metric_names[-2] == "accuracy_multi"

    preds, targs = learn.get_preds()
    assert preds.shape == targs.shape == (4, 3) and 0 <= float(preds.min()) <= float(preds.max()) <= 1  # sigmoid
    expected = ((preds > 0.9) == targs.bool()).float().mean()
    assert torch.isclose(accuracy_multi(preds, targs, thresh=0.9, sigmoid=False), expected)
    learn.show_results(max_n=4)

    labels, flags, probs = learn.predict(path/'train'/'001.png')
    assert flags.dtype == torch.bool and torch.equal(flags, probs > 0.5)
    assert labels == [c for c, on in zip(dls.vocab, flags) if on]

    with pytest.raises(ValueError, match="multi-label.*Interpretation.from_learner"):
        ClassificationInterpretation.from_learner(learn)
    losses, idxs = Interpretation.from_learner(learn).top_losses(2)
    assert losses.shape == (2,) and losses[0] >= losses[1]


@pytest.mark.slow
def test_thresh_of_the_loss_decides_predict_and_export_keeps_it(pascal, tmp_path):
    path, df = pascal
    dls = _book_dblock(path).dataloaders(df, bs=4, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False, loss_func=BCEWithLogitsLossFlat(thresh=0.2),
                           metrics=partial(accuracy_multi, thresh=0.2))
    learn.fit(1)
    labels, flags, probs = learn.predict(path/'train'/'002.png')
    assert torch.equal(flags, probs > 0.2) and labels == [c for c, on in zip(dls.vocab, flags) if on]

    learn.export(tmp_path/'multi.pkl')
    code = ("import json\nfrom lamina.vision.all import *\n"
            f"learn = load_learner(r'{tmp_path/'multi.pkl'}')\n"
            f"labels, flags, probs = learn.predict(r'{path/'train'/'002.png'}')\n"
            "print(json.dumps([learn.loss_func.thresh, labels, flags.tolist(), probs.tolist()]))")
    thresh, labels_again, flags_again, probs_again = fresh_json(code)
    assert thresh == 0.2 and labels_again == labels and flags_again == flags.tolist()
    assert np.allclose(probs_again, probs.tolist(), atol=1e-5)


def test_accuracy_multi_thresh_and_sigmoid():
    logits = torch.tensor([[2.0, -2.0, 0.1], [-0.1, 3.0, -3.0]])
    targs = torch.tensor([[1, 0, 1], [1, 1, 0]])
    # sigmoid: probabilities .88 .12 .52 / .48 .95 .05 ; thresh .5 → only the .48 misses
    assert torch.isclose(accuracy_multi(logits, targs), torch.tensor(5 / 6))
    # thresh .6 turns the .52 off too
    assert torch.isclose(accuracy_multi(logits, targs, thresh=0.6), torch.tensor(4 / 6))
    # without the sigmoid the raw values are compared: at 0, only -0.1 misses; at .5, 0.1 misses too
    assert torch.isclose(accuracy_multi(logits, targs, thresh=0.0, sigmoid=False), torch.tensor(5 / 6))
    assert torch.isclose(accuracy_multi(logits, targs, thresh=0.5, sigmoid=False), torch.tensor(4 / 6))
    metric = partial(accuracy_multi, thresh=0.2)
    learn = Learner(synth_classification(), nn.Linear(2, 2), metrics=metric)
    assert learn.metrics[0].name == "accuracy_multi"


def test_bce_thresh_decodes_and_activation():
    loss = BCEWithLogitsLossFlat(thresh=0.2)
    probs = loss.activation(torch.tensor([[-2.0, -1.0, 1.0]]))
    assert torch.allclose(probs, torch.sigmoid(torch.tensor([[-2.0, -1.0, 1.0]])))
    assert loss.decodes(probs).tolist() == [[False, True, True]]  # .12 .27 .73 against .2


def test_encoded_labels_with_vocab(pascal):
    path, df = pascal
    for name in CLASSES:
        df[name] = [int(name in labels.split(" ")) for labels in df["labels"]]
    dblock = DataBlock(blocks=(ImageBlock, MultiCategoryBlock(encoded=True, vocab=list(CLASSES))),
                       get_x=ColReader('fname', pref=f'{path}/train/'), get_y=ColReader(list(CLASSES)),
                       splitter=ColSplitter('is_valid'), item_tfms=Resize(16))
    dls = dblock.dataloaders(df, bs=4, num_workers=0)
    _, y = dls.valid.one_batch()
    assert dls.vocab == list(CLASSES) and dls.n_out == 3
    assert y.tolist() == df.loc[df.is_valid, list(CLASSES)].to_numpy().astype(float).tolist()
    assert dls.decode_prediction(y[0]) == df.loc[df.is_valid, "labels"].iloc[0].split(" ")
    with pytest.raises(ValueError, match="vocab"):
        MultiCategoryBlock(encoded=True)
