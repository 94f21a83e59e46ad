"""The chapter-1 examples of the fastai book, with only the import line changed, on tiny generated data.

The pets images are written where ``untar_data(URLs.PETS)`` finds them (``LAMINA_HOME/data/oxford-iiit-pet``),
the CamVid-like set where ``untar_data(URLs.CAMVID_TINY)`` does; resnet18 weights (a random state dict with
the file name torchvision expects) sit in a temporary torch-hub cache, so the real weight-loading path runs
offline. resnet18 and 24-48 px images keep each example to seconds.
"""


import pytest

from lamina.vision.all import *  # noqa: F403  (the point of the test: the book's star import)
from lamina.vision.synth import make_image_folder, make_segmentation_set

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture
def resnet18_in_hub_cache(offline_hub):
    """resnet18 weights in an isolated torch-hub cache; any download attempt fails (no network in tests)."""
    import torchvision.models as tvm
    state = tvm.resnet18().state_dict()
    torch.save(state, offline_hub / RESNET18_FILE)
    return state


@pytest.fixture
def pets(_isolated_home):
    folder = _isolated_home / "data" / "oxford-iiit-pet" / "images"
    # 80 images: the 64 of the training split fill one batch of the default size (the last partial one is dropped)
    return make_image_folder(folder, n_per_class=20, size=(40, 48), classes=("Persian", "Bengal", "pug", "beagle"))


@pytest.fixture
def camvid_tiny(_isolated_home):
    return make_segmentation_set(_isolated_home / "data" / "camvid_tiny", n=10, size=(24, 32), n_codes=3)


def test_pets_is_cat(pets, resnet18_in_hub_cache, tmp_path):
    path = untar_data(URLs.PETS)/'images'
    def is_cat(x): return x[0].isupper()  # noqa: E704
    dls = ImageDataLoaders.from_name_func(
        path, get_image_files(path), valid_pct=0.2, seed=42,
        label_func=is_cat, item_tfms=Resize(32))
    learn = vision_learner(dls, resnet18, metrics=error_rate)
    learn.fine_tune(1)

    assert not torch.equal(learn.model[0][0].weight.cpu(), resnet18_in_hub_cache["conv1.weight"])  # fine-tuned
    assert list(dls.vocab) == [False, True] and len(learn.recorder.values) == 1
    img = PILImage.create(path/'Persian_0.jpg')
    is_cat, _, probs = learn.predict(img)
    assert is_cat in ("True", "False") and probs.shape == (2,)
    assert abs(float(probs.sum()) - 1) < 1e-5
    print(f"Is this a cat?: {is_cat}.")
    print(f"Probability it's a cat: {probs[1].item():.6f}")

    learn.export(tmp_path / "pets.pkl")
    loaded = load_learner(tmp_path / "pets.pkl")
    again, _, probs_again = loaded.predict(img)
    assert again == is_cat and torch.allclose(probs_again, probs, atol=1e-5)
    with pytest.warns(DeprecationWarning, match="vision_learner"):
        old = cnn_learner(dls, resnet18, metrics=error_rate)  # the printed book's spelling
    assert len(old.opt.param_lists) == 3


def test_camvid_unet(camvid_tiny, resnet18_in_hub_cache, tmp_path):
    path = untar_data(URLs.CAMVID_TINY)
    dls = SegmentationDataLoaders.from_label_func(
        path, bs=8, fnames = get_image_files(path/"images"),
        label_func = lambda o: path/'labels'/f'{o.stem}_P{o.suffix}',
        codes = np.loadtxt(path/'codes.txt', dtype=str))
    learn = unet_learner(dls, resnet18)
    learn.fine_tune(1)
    learn.show_results(max_n=6, figsize=(7,8))

    assert dls.n_out == 3 and isinstance(learn.model, DynamicUnet)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat) and learn.loss_func.axis == 1
    mask, decoded, probs = learn.predict(path/'images'/'img0.png')
    assert decoded.shape == (24, 32) and probs.shape == (3, 24, 32)
    learn.export(tmp_path / "camvid.pkl")
    loaded = load_learner(tmp_path / "camvid.pkl")
    assert torch.equal(loaded.predict(path/'images'/'img0.png')[1], decoded)
