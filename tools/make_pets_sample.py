"""Rebuild ``lamina/assets/pets_sample.tgz``, the small Oxford-IIIT Pet sample bundled with lamina.

Usage::

    python tools/make_pets_sample.py SOURCE_IMAGES [--per-breed 5] [--short-side 176] [--out lamina/assets]

``SOURCE_IMAGES`` is a folder of Oxford-IIIT Pet JPEGs named ``<breed>_<n>.jpg`` (the ``images/``
folder of the official ``oxford-iiit-pet`` archive, or any subset of it with enough images per breed).

The script picks the ``--per-breed`` images with the lowest numbers of every breed, so the choice
depends only on the file names. Each image is converted to RGB, resized so its shorter side is
``--short-side`` pixels, and saved as a JPEG (quality 85, no EXIF, no ICC profile) under its original
file name. The archive holds ``pets_sample/images/*.jpg`` and ``pets_sample/LICENSE.txt``; its members
are sorted and carry a fixed mtime and owner, and the gzip header has no name or time, so the same
inputs and the same Pillow/libjpeg version give a byte-identical archive. The licence text is written
beside the archive too. The script prints the archive's size and sha256: copy them into the
``PETS_SAMPLE`` entry of the check table in ``lamina/data/external.py``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import tarfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

ARCHIVE_NAME = "pets_sample.tgz"
ROOT = "pets_sample"
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z: any constant keeps the archive reproducible
JPEG_QUALITY = 85

LICENSE_TEXT = """\
lamina pets_sample: a small subset of the Oxford-IIIT Pet Dataset
=================================================================

Source: The Oxford-IIIT Pet Dataset
        https://www.robots.ox.ac.uk/~vgg/data/pets/
Authors: Omkar M. Parkhi, Andrea Vedaldi, Andrew Zisserman and C. V. Jawahar,
         "Cats and Dogs", IEEE Conference on Computer Vision and Pattern Recognition (CVPR), 2012.

Licence: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0),
         https://creativecommons.org/licenses/by-sa/4.0/
         The copyright of the images remains with their original owners.

Changes: {n_images} images ({per_breed} for each of the 37 breeds) were selected, converted to RGB,
         downsized so that the shorter side is {short_side} pixels, and re-encoded as JPEG (quality
         {quality}) without EXIF metadata. File names are unchanged: cat breeds are capitalised
         (Abyssinian_1.jpg), dog breeds are lower case (beagle_1.jpg). This sample is shared under
         the same licence, CC BY-SA 4.0.

Rebuild it with tools/make_pets_sample.py from the lamina source tree.
"""

_NAME = re.compile(r"^(?P<breed>.+)_(?P<number>\d+)\.jpe?g$", re.IGNORECASE)


def choose_images(source: Path, per_breed: int) -> list[Path]:
    """The ``per_breed`` lowest-numbered images of each breed, sorted by file name."""
    by_breed: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in source.iterdir():
        match = _NAME.match(path.name)
        if match:
            by_breed[match["breed"]].append((int(match["number"]), path))
    if not by_breed:
        raise SystemExit(f"no '<breed>_<n>.jpg' files in {source}; pass the pets images folder")
    chosen = []
    for breed, items in sorted(by_breed.items()):
        if len(items) < per_breed:
            raise SystemExit(f"breed {breed!r} has {len(items)} images in {source}; need {per_breed}")
        chosen += [path for _, path in sorted(items)[:per_breed]]
    return sorted(chosen, key=lambda p: p.name)


def shrink(path: Path, short_side: int) -> bytes:
    """The image at ``path`` as JPEG bytes with its shorter side at ``short_side`` pixels."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = short_side / min(im.size)
        if scale < 1:  # never upscale the few small originals
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        # No exif/icc_profile arguments: Pillow then writes neither, which strips the metadata.
        im.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def _member(name: str, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(dest: Path, files: list[tuple[str, bytes]]) -> None:
    """Write ``files`` ((member name, bytes), sorted) as a reproducible ``.tgz`` at ``dest``."""
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_member(ROOT, is_dir=True))
            tar.addfile(_member(f"{ROOT}/images", is_dir=True))
            for name, data in sorted(files):
                tar.addfile(_member(name, len(data)), io.BytesIO(data))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of Oxford-IIIT Pet JPEGs (<breed>_<n>.jpg)")
    parser.add_argument("--per-breed", type=int, default=5, help="images kept per breed (default 5)")
    parser.add_argument("--short-side", type=int, default=176, help="shorter side in pixels (default 176)")
    default_out = Path(__file__).resolve().parents[1] / "lamina" / "assets"
    parser.add_argument("--out", type=Path, default=default_out, help="folder for the archive and licence")
    args = parser.parse_args(argv)

    chosen = choose_images(args.source, args.per_breed)
    license_text = LICENSE_TEXT.format(n_images=len(chosen), per_breed=args.per_breed,
                                       short_side=args.short_side, quality=JPEG_QUALITY)
    files = [(f"{ROOT}/images/{p.name}", shrink(p, args.short_side)) for p in chosen]
    files.append((f"{ROOT}/LICENSE.txt", license_text.encode()))
    args.out.mkdir(parents=True, exist_ok=True)
    archive = args.out / ARCHIVE_NAME
    write_archive(archive, files)
    (args.out / "PETS_SAMPLE_LICENSE.txt").write_text(license_text)
    data = archive.read_bytes()
    print(f"{archive}: {len(chosen)} images, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
