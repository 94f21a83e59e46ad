"""File listing and image verification on small folders built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from lamina.data.files import (FileGetter, ImageGetter, get_files, get_image_files, get_text_files, image_extensions,
                               verify_image, verify_images)

# Created in this (unsorted) order on purpose: listings must come back sorted anyway.
TREE = ["zeta.jpg", "Alpha.PNG", "notes.txt", ".hidden.jpg", "valid/y.jpg", "train/x.jpg", "train/b/deep.gif",
        "train/a.jpeg", ".git/objects.jpg", "train/.cache/c.jpg", "README"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in TREE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_all_files_sorted_hidden_skipped(tree):
    assert rel(get_files(tree), tree) == ["Alpha.PNG", "README", "notes.txt", "zeta.jpg",
                                          "train/a.jpeg", "train/x.jpg", "train/b/deep.gif", "valid/y.jpg"]
    assert all(isinstance(p, Path) for p in get_files(str(tree)))


def test_extensions_are_case_insensitive(tree):
    assert rel(get_files(tree, extensions=".png"), tree) == ["Alpha.PNG"]
    assert rel(get_files(tree, extensions=["JPG", ".txt"]), tree) == ["notes.txt", "zeta.jpg", "train/x.jpg",
                                                                      "valid/y.jpg"]
    assert get_files(tree, extensions=[]) == get_files(tree)


def test_no_recursion(tree):
    assert rel(get_files(tree, recurse=False), tree) == ["Alpha.PNG", "README", "notes.txt", "zeta.jpg"]


def test_folders_limit_the_top_level_only(tree):
    assert rel(get_files(tree, folders=["train"]), tree) == ["train/a.jpeg", "train/x.jpg", "train/b/deep.gif"]
    assert rel(get_files(tree, folders="valid"), tree) == ["valid/y.jpg"]
    assert rel(get_files(tree, extensions=".jpg", folders=["valid", "."]), tree) == ["zeta.jpg", "valid/y.jpg"]
    assert rel(get_files(tree, folders=[".git"]), tree) == [".git/objects.jpg"]  # named explicitly: walked


def test_symlinked_folders(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "linked.jpg").write_bytes(b"x")
    os.symlink(outside, tree / "valid" / "more")
    assert "valid/more/linked.jpg" in rel(get_files(tree), tree)
    assert "valid/more/linked.jpg" not in rel(get_files(tree, followlinks=False), tree)


def test_missing_or_file_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path` does not exist: .*nowhere"):
        get_files(tmp_path / "nowhere")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="must be a folder.*f.txt"):
        get_image_files(tmp_path / "f.txt")
    with pytest.raises(TypeError, match="received a list of 2 items.*the DataBlock's source"):
        get_image_files([tmp_path / "f.txt", tmp_path / "g.txt"])  # files listed already, as a get_items source


def test_image_and_text_files(tree, tmp_path_factory):
    assert {".jpg", ".jpeg", ".png", ".gif", ".webp"} <= image_extensions and ".txt" not in image_extensions
    assert rel(get_image_files(tree), tree) == ["Alpha.PNG", "zeta.jpg", "train/a.jpeg", "train/x.jpg",
                                                "train/b/deep.gif", "valid/y.jpg"]
    assert rel(get_image_files(tree, recurse=False), tree) == ["Alpha.PNG", "zeta.jpg"]
    assert rel(get_text_files(tree), tree) == ["notes.txt"]
    empty = tmp_path_factory.mktemp("empty")
    (empty / "data.csv").write_text("a,b")
    assert get_image_files(empty) == []


def test_getters(tree):
    assert rel(FileGetter(suf="train", extensions=".jpg")(tree), tree) == ["train/x.jpg"]
    assert rel(ImageGetter(folders=["valid"])(tree), tree) == ["valid/y.jpg"]
    assert rel(ImageGetter("train", recurse=False)(tree), tree) == ["train/a.jpeg", "train/x.jpg"]
    assert "folders=['valid']" in repr(ImageGetter(folders=["valid"]))


def test_verify_images(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(good, quality=90)
    png = tmp_path / "good.png"
    Image.new("L", (8, 8)).save(png)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    assert verify_image(good) and verify_image(str(png))
    assert not verify_image(truncated) and not verify_image(text) and not verify_image(missing)
    files = [good, truncated, png, text, missing]
    assert verify_images(files) == [truncated, text, missing]
    assert verify_images(map(str, files), max_workers=1) == [truncated, text, missing]
    assert verify_images([]) == []
