"""CUDA paths: bf16 and fp16 autocast, channels-last, augmentation on the GPU, pinned loading, predict/export
and resume from a GPU learner, resident tensor loaders.

These need a CUDA GPU and are skipped without one. The same code runs on the CPU in the rest of the suite:
autocast in tests/vision/test_augment.py and tests/callbacks, channels-last selection in
tests/vision/test_learner.py, exact resume in tests/test_checkpoint.py.
"""

import pytest
import torch

from lamina.callbacks.core import Callback
from lamina.callbacks.precision import ChannelsLast, MixedPrecision
from lamina.callbacks.training import GradientClip
from lamina.data.loaders import apply_batch_tfms
from lamina.export import load_learner
from lamina.vision.augment import aug_transforms
from lamina.vision.core import PILImage
from lamina.vision.data import ImageDataLoaders, SegmentationDataLoaders
from lamina.vision.learner import unet_learner, vision_learner
from lamina.vision.synth import make_image_folder, make_segmentation_set
from lamina.vision.transforms import Resize
from lamina.models.bodies import resnet18

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def cuda(monkeypatch):
    monkeypatch.setenv("LAMINA_DEVICE", "cuda")
    return torch.device("cuda", torch.cuda.current_device())


def quiet(learn):
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def image_dls(tmp_path, **kwargs):
    files = make_image_folder(tmp_path / "images", n_per_class=24, size=40, classes=("Persian", "pug", "Bengal"))
    return ImageDataLoaders.from_name_func(tmp_path, files, valid_pct=0.25, seed=42, bs=8,
                                           label_func=lambda name: name.split("_")[0],
                                           item_tfms=Resize(32), batch_tfms=aug_transforms(), **kwargs)


def test_loaders_pin_and_land_on_the_gpu(cuda, tmp_path):
    dls = image_dls(tmp_path, num_workers=2)
    assert dls.device.type == "cuda" and dls.train.pin_memory
    xb, yb = dls.one_batch()
    assert xb.device.type == "cuda" and yb.device.type == "cuda"
    assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32)


def test_bf16_autocast_trains_with_bf16_convolutions_and_fp32_weights(cuda, tmp_path):
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False, metrics=[]).to_bf16())
    seen, preds = [], []
    hook = learn.model[0][0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))

    class PredDtype(Callback):
        order = 50  # after MixedPrecision

        def after_loss(self):
            preds.append(self.learn.pred.dtype)

    learn.fit_one_cycle(2, 1e-3, cbs=[PredDtype()])
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    losses = learn.recorder.values
    assert all(torch.isfinite(torch.tensor(v[:2])).all() for v in losses)
    assert set(preds) == {torch.float32}  # cast back for the loss and the metrics
    assert not torch.is_autocast_enabled("cuda")  # nothing left on after the fit


def test_fp16_uses_a_grad_scaler_and_skips_steps_with_inf_gradients(cuda, tmp_path):
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False).to_fp16())
    learn.fit(1, 1e-3)
    mp = learn.mixed_precision
    assert isinstance(mp, MixedPrecision) and mp.scaler.is_enabled()
    before = {k: v.clone() for k, v in learn.model.named_parameters()}
    scale = mp.scaler.get_scale()

    class InfGrads(Callback):
        order = 5  # before MixedPrecision steps through the scaler

        def before_step(self):
            for p in self.learn.model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("inf"))

    learn.fit(1, 1e-3, cbs=[InfGrads()])
    assert mp.scaler.get_scale() < scale  # the scaler lowered its scale ...
    for name, p in learn.model.named_parameters():  # ... and neither the step nor the decay happened
        assert torch.equal(p, before[name]), name


def test_fp16_gradient_clip_clips_unscaled_gradients_and_the_step_goes_through(cuda, tmp_path):
    import math
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False).to_fp16())
    norms = []

    class Norm(Callback):
        order = 5  # after GradientClip, before MixedPrecision steps through the scaler

        def before_step(self):
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norms.append(float(torch.nn.utils.get_total_norm(grads)))

    learn.fit(1, 1e-3, cbs=[GradientClip(max_norm=0.1), Norm()])  # unscaled once: torch refuses twice
    finite = [n for n in norms if math.isfinite(n)]  # a first step may overflow at the initial scale
    assert finite and max(finite) <= 0.1 + 1e-3


def test_channels_last_on_cuda_matches_contiguous(cuda, tmp_path):
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False))
    assert isinstance(learn.channels_last, ChannelsLast)
    learn.fit(1, 1e-3)
    conv = learn.model[0][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    xb, _ = learn.dls.valid.one_batch()
    learn.model.eval()
    with torch.no_grad():
        fast = learn.model(xb)
        learn.to_contiguous()
        assert conv.weight.is_contiguous()
        plain = learn.model(xb)
    torch.testing.assert_close(fast, plain, atol=1e-3, rtol=1e-3)


def test_fused_augmentation_runs_on_the_gpu_and_masks_follow_images(cuda):
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 5, (8, 8, 8), generator=gen)
    mask = codes.repeat_interleave(4, 1).repeat_interleave(4, 2).to(cuda)
    image = (torch.stack([mask, (mask * 2 + 1) % 5, (mask * 3 + 2) % 5], dim=1).float() / 4)
    tfms = aug_transforms(max_rotate=40, min_zoom=0.7, max_zoom=1.5, max_warp=0.3, p_affine=1.0, max_lighting=0,
                          mode="nearest")
    torch.manual_seed(1)
    out_img, out_mask, _ = apply_batch_tfms((image, mask, torch.arange(8, device=cuda)), tfms,
                                            ("image", "mask", "category"), 0)
    assert out_img.device.type == "cuda" and out_mask.device.type == "cuda"
    assert not torch.equal(out_mask, mask)
    assert torch.equal((out_img[:, 0] * 4).round().long(), out_mask)


def test_predict_export_and_cpu_reload_of_a_gpu_learner(cuda, tmp_path):
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False).to_bf16())
    learn.fit(1, 1e-3)
    img = PILImage.create(sorted((tmp_path / "images").glob("*.jpg"))[0])
    label, idx, probs = learn.predict(img)
    assert label in learn.dls.vocab and probs.device.type == "cpu"
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-3)
    learn.to_fp32()
    _, _, full = learn.predict(img)
    learn.export(tmp_path / "export.pkl")
    cpu = load_learner(tmp_path / "export.pkl", cpu=True)
    assert next(cpu.model.parameters()).device.type == "cpu"
    _, _, again = cpu.predict(img)
    torch.testing.assert_close(again, full, atol=1e-4, rtol=1e-4)


def test_unet_bf16_channels_last_on_cuda(cuda, tmp_path):
    path = tmp_path / "camvid"
    make_segmentation_set(path, n=12, size=(32, 48), n_codes=3)
    dls = SegmentationDataLoaders.from_label_func(
        path, fnames=sorted((path / "images").glob("*.png")), bs=4, codes=(path / "codes.txt").read_text().split(),
        label_func=lambda o: path / "labels" / f"{o.stem}_P{o.suffix}", batch_tfms=aug_transforms())
    learn = quiet(unet_learner(dls, resnet18, pretrained=False).to_bf16())
    learn.fit(1, 1e-3)
    preds, targs = learn.get_preds()
    assert preds.shape[0] == targs.shape[0] and preds.shape[-2:] == targs.shape[-2:] == (32, 48)
    assert torch.isfinite(preds).all()


def test_tensor_loaders_resident_on_the_gpu(cuda):
    from lamina.collab import CollabDataLoaders, collab_learner, synth_ratings
    from lamina.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner
    from lamina.tabular.synth import adult_like

    df = adult_like(400)
    dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=["workclass", "education"],
                                     cont_names=["age", "fnlwgt"], procs=[Categorify, FillMissing, Normalize])
    learn = quiet(tabular_learner(dls))
    learn.fit_one_cycle(1)
    assert next(learn.model.parameters()).device.type == "cuda"
    assert all(t.device.type == "cuda" for t in dls.train.one_batch())
    row, clas, probs = learn.predict(df.iloc[0])
    assert probs.device.type == "cpu" and probs.shape == (2,)

    cdls = CollabDataLoaders.from_df(synth_ratings(), bs=64)
    clearn = quiet(collab_learner(cdls, n_factors=8, y_range=(0.5, 5.5)))
    clearn.fit_one_cycle(1, 5e-3)
    assert torch.isfinite(torch.tensor(clearn.recorder.values[-1][:2])).all()


def test_checkpoint_resume_restores_the_cuda_random_state(cuda, tmp_path):
    learn = quiet(vision_learner(image_dls(tmp_path), resnet18, pretrained=False))
    learn.fit(1, 1e-3)
    torch.cuda.manual_seed(7)
    learn.save("ckpt", with_opt=True)
    expected = torch.rand(4, device=cuda)  # the draw that followed the save
    torch.rand(100, device=cuda)  # the CUDA generator moves on
    learn.load("ckpt", resume=True)
    assert torch.equal(torch.rand(4, device=cuda), expected)
    assert next(learn.model.parameters()).device.type == "cuda"
