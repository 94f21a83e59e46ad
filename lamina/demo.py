"""The README's main job: ``python -m lamina.demo`` — fastai's chapter-1 pets example, offline.

It runs the chapter-1 code on the small Oxford-IIIT Pets sample bundled with lamina (extracted by
`untar_data`, as a download would be): cat or dog from the file name, `fine_tune`, the epoch tables,
a prediction on an image held out of training, then export (to ``$LAMINA_HOME/models/pets.pkl``, for
``lamina predict`` and ``lamina serve``) and reload in a safe file. With ImageNet
resnet34 weights in the torch-hub cache it fine-tunes them; without (no download here) it says so and
trains a resnet18 from scratch at a smaller size, so the demo stays a couple of minutes on two CPU cores.
"""

from __future__ import annotations

import time

from .config import lamina_path


def is_cat(name: str) -> bool:
    """Cat breeds have capitalised file names in the Oxford-IIIT Pets data."""
    return name[0].isupper()


def _cached_resnet34() -> bool:
    from torchvision.models import ResNet34_Weights

    from .models.bodies import weights_file
    return weights_file(ResNet34_Weights.DEFAULT).exists()


def main() -> None:
    """Train, predict a held-out image, export and reload."""
    from .vision.all import (ImageDataLoaders, PILImage, Resize, URLs, error_rate, get_image_files, load_learner,
                             resnet18, resnet34, untar_data, vision_learner)
    start = time.time()
    path = untar_data(URLs.PETS_SAMPLE) / "images"
    files = get_image_files(path)
    held_out, files = files[0], files[1:]  # never seen in training: the "uploaded" image of chapter 1
    pretrained = _cached_resnet34()
    if pretrained:
        arch, size, epochs = resnet34, 224, 1
    else:
        print("No ImageNet resnet34 weights in the torch-hub cache (no download here): training a resnet18 "
              "from scratch at 112 px instead.")
        arch, size, epochs = resnet18, 112, 4
    dls = ImageDataLoaders.from_name_func(path, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                          item_tfms=Resize(size), bs=32)
    learn = vision_learner(dls, arch, metrics=error_rate, pretrained=pretrained)
    if pretrained:
        learn.fine_tune(epochs)
    else:  # nothing to fine-tune: a random body needs every layer trained from the start
        learn.fit_one_cycle(epochs, 3e-3)

    img = PILImage.create(held_out)
    cat, _, probs = learn.predict(img)
    print(f"{held_out.name}: is this a cat? {cat}. Probability it's a cat: {probs[1].item():.6f}")

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
