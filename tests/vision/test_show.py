"""show_batch / show_results grids for classification, multi-label and segmentation (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lamina.vision.augment import Normalize  # noqa: E402
from lamina.vision.core import PILImage, imagenet_stats  # noqa: E402
from lamina.vision.data import ImageDataLoaders, SegmentationDataLoaders  # noqa: E402
from lamina.vision.show import show_batch, show_image, show_images, show_results  # noqa: E402
from lamina.vision.synth import make_image_folder, make_segmentation_set  # noqa: E402
from lamina.vision.transforms import FlipItem, Resize  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def is_cat(x: str) -> bool:
    return x[0].isupper()


@pytest.fixture
def pets_dls(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=3, size=(20, 24), classes=("Persian", "pug"))
    return ImageDataLoaders.from_name_func(tmp_path, files, valid_pct=0.5, seed=0, label_func=is_cat,
                                           item_tfms=Resize(16), bs=3, num_workers=0)


def test_show_batch_classification_titles(pets_dls):
    pets_dls.add_tfms([Normalize.from_stats(*imagenet_stats)])
    batch = pets_dls.valid.one_batch()
    axes = pets_dls.show_batch(b=batch, max_n=2).axes
    assert len(axes) == 2
    labels = ["True" if y else "False" for y in batch[1][:2].tolist()]
    assert [ax.get_title() for ax in axes] == labels
    shown = axes[0].images[0].get_array()
    assert shown.min() >= 0 and shown.max() <= 1  # normalisation undone for display


def test_show_batch_multilabel(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=2, size=16, classes=("Persian", "pug"))
    dls = ImageDataLoaders.from_lists(tmp_path, files, [["cat", "fluffy"], ["dog", "fluffy"], ["cat", "dog"],
                                                 ["cat", "dog", "fluffy"]], valid_pct=0.5,
                                      seed=0, bs=2, num_workers=0)
    batch = dls.valid.one_batch()
    axes = show_batch(dls, batch).axes
    titles = [ax.get_title() for ax in axes]
    assert titles == [";".join(np.array(dls.vocab)[y.bool().numpy()]) for y in batch[1]] and len(axes) == 2
    assert set(titles) <= {"cat;fluffy", "dog;fluffy", "cat;dog", "cat;dog;fluffy"}


@pytest.fixture
def seg_dls(tmp_path):
    files = make_segmentation_set(tmp_path, n=4, size=(16, 16), n_codes=3)
    return SegmentationDataLoaders.from_label_func(tmp_path, files, lambda o: tmp_path / "labels" / f"{o.stem}_P.png",
                                                   codes=["a", "b", "c"], valid_pct=0.5, seed=0, bs=2, num_workers=0)


def test_show_batch_segmentation_overlays_masks(seg_dls):
    axes = seg_dls.show_batch().axes
    assert len(axes) == 2 and all(len(ax.images) == 2 for ax in axes)
    assert axes[0].images[1].get_cmap().name == "tab20"


def test_show_results_classification_colours(pets_dls):
    batch = pets_dls.valid.one_batch()
    targets = batch[1]
    preds = targets.clone()
    preds[0] = 1 - preds[0]
    probs = torch.nn.functional.one_hot(preds, 2).float()
    fig = show_results(pets_dls, batch, probs, preds)
    axes = fig.axes
    colours = [matplotlib.colors.to_hex(ax.title.get_color()) for ax in axes]
    assert colours[0] == matplotlib.colors.to_hex("red") and set(colours[1:]) == {matplotlib.colors.to_hex("green")}
    # both read prediction/actual, fastai's plot_top_losses order, and a line above the grid says so
    assert axes[1].get_title() == f"{bool(preds[1])}/{bool(targets[1])}"
    assert fig.get_suptitle() == "prediction/actual (green: right, red: wrong)"
    top = pets_dls.valid.show_results(pets_dls, batch, probs, preds, max_n=1, losses=torch.tensor([2.5]))
    assert top.axes[0].get_title() == f"{bool(preds[0])}/{bool(targets[0])} / 2.50 / 1.00"
    assert top.get_suptitle() == "prediction/actual / loss / probability"
    assert show_results(pets_dls, batch, probs, preds, suptitle="mine").get_suptitle() == "mine"


def test_show_results_segmentation_side_by_side(seg_dls):
    batch = seg_dls.valid.one_batch()
    preds = torch.zeros_like(batch[1])
    axes = seg_dls.valid.show_results(seg_dls, batch, torch.rand(2, 3, 16, 16), preds, max_n=2, figsize=(4, 4)).axes
    assert len(axes) == 4 and axes[0].get_title() == "target" and axes[1].get_title() == "prediction"
    assert all(len(ax.images) == 2 for ax in axes)
    assert np.array_equal(axes[1].images[1].get_array(), preds[0].numpy())


def test_show_image_and_images():
    ax = show_image(torch.rand(1, 8, 8), title="gray")
    assert ax.images[0].get_cmap().name == "gray" and ax.get_title() == "gray"
    axes = show_images([torch.rand(3, 8, 8), np.zeros((8, 8, 3), dtype=np.uint8)], titles=["a", "b"]).axes
    assert [a.get_title() for a in axes] == ["a", "b"]


def test_show_batch_unique_shows_one_training_item_augmented(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=3, size=(20, 24), classes=("Persian", "pug"))
    dls = ImageDataLoaders.from_name_func(tmp_path, files, valid_pct=0.5, seed=0, label_func=is_cat, bs=3,
                                          num_workers=0, item_tfms=[Resize(16, method="squish"), FlipItem(p=1.0)])
    axes = dls.show_batch(unique=True, max_n=4, nrows=1).axes
    assert len(axes) == 4 and len({ax.get_title() for ax in axes}) == 1
    shown = [ax.images[0].get_array() for ax in axes]
    first = np.asarray(dls.train_ds[0][0].permute(1, 2, 0)) / 255  # the training pipeline: flipped
    assert all(np.allclose(a, shown[0]) for a in shown) and np.allclose(shown[0], first, atol=1e-6)
    source = dls.train_ds.items[dls.train_ds.idxs[0]]
    unflipped = np.asarray(Resize(16, method="squish")(PILImage.create(source))) / 255
    assert np.allclose(shown[0], unflipped[:, ::-1], atol=1e-6)


def test_show_batch_grid_options_and_unknown_kwargs(pets_dls):
    axes = pets_dls.show_batch(max_n=3, nrows=1, ncols=3, figsize=(6, 2), alpha=0.5).axes
    assert axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 3)
    assert tuple(axes[0].get_figure().get_size_inches()) == (6, 2) and axes[0].images[0].get_alpha() == 0.5
    with pytest.raises(TypeError, match=r"show_batch\(\) got unexpected keyword arguments \['bogus'\]"):
        pets_dls.show_batch(bogus=1)
    xb, yb = pets_dls.show_batch(show=False)  # the decoded batch, nothing drawn
    assert xb.shape[1:] == (3, 16, 16) and xb.max() <= 1
    _, ctxs = plt.subplots(1, 2)
    assert pets_dls.show_batch(max_n=2, ctxs=ctxs).axes == list(ctxs)  # drawn on the caller's figure


def test_show_mask_leaves_void_pixels_transparent(seg_dls):
    batch = seg_dls.valid.one_batch()
    masks = batch[1].clone()
    masks[:, 0] = 255
    axes = seg_dls.show_batch(b=(batch[0], masks)).axes
    overlay = axes[0].images[1].get_array()
    assert np.ma.getmaskarray(overlay)[0].all() or np.isnan(np.asarray(overlay, dtype=float)[0]).all()


def test_segmentation_show_batch_has_a_legend_of_the_codes_shown(seg_dls):
    batch = seg_dls.valid.one_batch()
    masks = torch.zeros_like(batch[1])
    masks[:, :4] = 2  # codes 'a' and 'c' present, 'b' absent
    fig = seg_dls.show_batch(b=(batch[0], masks))
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "c"]
    colours = [tuple(p.get_facecolor()[:3]) for p in legend.get_patches()]
    cmap, norm = fig.axes[0].images[1].get_cmap(), fig.axes[0].images[1].norm
    assert np.allclose(colours, [cmap(norm(0))[:3], cmap(norm(2))[:3]])  # the colours the masks are drawn in


def test_grid_follows_the_images_aspect_ratio(tmp_path):
    files = make_segmentation_set(tmp_path, n=4, size=(16, 32), n_codes=2)
    dls = SegmentationDataLoaders.from_label_func(tmp_path, files, lambda o: tmp_path / "labels" / f"{o.stem}_P.png",
                                                  codes=["a", "b"], valid_pct=0.5, seed=0, bs=2, num_workers=0)
    width, height = dls.show_batch(max_n=2).get_size_inches()
    # one row of two 2:1 images, 3 inches wide each: 1.5 inches high plus a legend line, no blank band
    assert width == 6 and height == pytest.approx(1.5 + 0.3)


def test_get_grid_and_show_titled_image():
    import numpy as np

    from lamina.vision.show import get_grid, show_titled_image

    axes = get_grid(5)
    assert len(axes) == 5 and len(axes[0].figure.axes) == 5  # 3 x 2, the sixth cell removed
    fig, axes = get_grid(4, ncols=1, double=True, title="pairs", return_fig=True)
    assert len(axes) == 8 and fig._suptitle.get_text() == "pairs"
    ax = show_titled_image((np.zeros((8, 8, 3), dtype=np.uint8), "a cat"))
    assert ax.get_title() == "a cat"
