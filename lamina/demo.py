"""The README's main job: ``python -m lamina.demo`` — fastai's chapter-1 pets example, offline.

It runs the chapter-1 code on the small Oxford-IIIT Pets sample bundled with lamina (extracted by
`untar_data`, as a download would be): cat or dog from the file name, training with its epoch table(s), a
prediction on an image held out of training (and whether it was right), then export (to
``$LAMINA_HOME/models/pets.pkl``, for ``lamina predict`` and ``lamina serve``) and reload in a safe file.
Seeded, so a run repeats on the same machine.

Its first line says which of two runs this is. With ImageNet resnet34 weights in the torch-hub cache it
fine-tunes them (chapter 1's ``fine_tune(1)``: two tables, one per phase). Without them (no download here) it
trains a resnet18 from scratch at 112 px for four epochs (one table): a smoke test of the whole pipeline that
stays a couple of minutes on two CPU cores, whose answers on so few images are close to a coin flip.
"""

from __future__ import annotations

import time
from typing import Any

from .config import lamina_path


def is_cat(name: str) -> bool:
    """Cat breeds have capitalised file names in the Oxford-IIIT Pets data."""
    return name[0].isupper()


def _cached_resnet34() -> Any:
    """The cache file of the ImageNet resnet34 weights (whether or not it exists)."""
    from torchvision.models import ResNet34_Weights

    from .models.bodies import weights_file
    return weights_file(ResNet34_Weights.DEFAULT)


def plan_line(pretrained: bool, weights: Any) -> str:
    """The demo's first line: which run this is, and what the other one would be."""
    if pretrained:
        return ("ImageNet resnet34 weights found in the torch-hub cache: fine-tuning them as chapter 1 does "
                "(without them the demo trains from scratch as an offline smoke test).")
    return ("Offline smoke test: no ImageNet resnet34 weights in the torch-hub cache, so a resnet18 trains from "
            f"scratch at 112 px and its answers are near chance; with {weights.name} in {weights.parent} the demo "
            "fine-tunes those weights instead.")


def verdict_line(name: str, truth: bool, predicted: Any, prob_cat: float) -> str:
    """What the model said about the held-out image, and whether it was right."""
    said_cat = str(predicted) == "True"
    right = "right" if said_cat == truth else "wrong"
    return (f"held-out image {name} (a {'cat' if truth else 'dog'}): is this a cat? {predicted}. "
            f"Probability it's a cat: {prob_cat:.6f} ({right})")


def main() -> None:
    """Train, predict a held-out image, export and reload."""
    from .vision.all import (ImageDataLoaders, PILImage, Resize, URLs, error_rate, get_image_files, load_learner,
                             resnet18, resnet34, set_seed, untar_data, vision_learner)
    start = time.time()
    set_seed(42)
    path = untar_data(URLs.PETS_SAMPLE) / "images"
    files = get_image_files(path)
    held_out, files = files[0], files[1:]  # never seen in training: the "uploaded" image of chapter 1
    weights = _cached_resnet34()
    pretrained = weights.exists()
    print(plan_line(pretrained, weights), flush=True)
    arch, size, epochs = (resnet34, 224, 1) if pretrained else (resnet18, 112, 4)
    dls = ImageDataLoaders.from_name_func(path, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                          item_tfms=Resize(size), bs=32)
    learn = vision_learner(dls, arch, metrics=error_rate, pretrained=pretrained)
    if pretrained:
        learn.fine_tune(epochs)
    else:  # nothing to fine-tune: a random body needs every layer trained from the start
        learn.fit_one_cycle(epochs, 3e-3)

    img = PILImage.create(held_out)
    cat, _, probs = learn.predict(img)
    print(verdict_line(held_out.name, is_cat(held_out.name), cat, probs[1].item()))

    exported = learn.export(lamina_path("models") / "pets.pkl")  # kept: `lamina predict/serve` take it
    reloaded = load_learner(exported)
    cat_again, _, again = reloaded.predict(img)
    # the reloaded learner predicts in fp32; the trained one may use bf16 autocast (see default_formats)
    same = cat_again == cat and bool((again - probs).abs().max() < 1e-2)
    print(f"exported to {exported}, a safe file ({exported.stat().st_size / 1e6:.1f} MB), and reloaded: "
          f"same prediction: {same}")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
