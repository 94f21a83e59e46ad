"""fastai's foundations as the book calls them: `L`, ``Path.ls()`` and `Module`."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lamina.data.files import get_files, get_image_files, verify_images
from lamina.foundation import L, Module, patch_path_ls, path_ls


# --- L ----------------------------------------------------------------------------------------------
def test_construction_matches_fastai():
    assert L(1, 2, 3) == L([1, 2, 3]) == L(range(1, 4)) == [1, 2, 3]
    assert L() == L(None) == [] and L("abc") == ["abc"] and L(7) == [7]
    t = torch.arange(3)
    assert len(L(t)) == 1 and L(t)[0] is t  # an array or tensor is one item, as in fastai
    assert isinstance(L(1), list)


def test_repr_has_the_length_first_and_stops_after_ten_items():
    assert repr(L(1, 2, 3)) == "(#3) [1,2,3]" and str(L()) == "(#0) []"
    assert repr(L(range(12))) == "(#12) [0,1,2,3,4,5,6,7,8,9...]"
    assert repr(L("a")) == "(#1) ['a']"


def test_indexing_by_positions_masks_and_tensors():
    items = L("a", "b", "c", "d")
    assert items[2] == "c" and items[np.int64(1)] == "b" and items[torch.tensor(3)] == "d"
    assert items[1:3] == ["b", "c"] and isinstance(items[1:3], L)
    assert items[[3, 0]] == ["d", "a"] and items[np.array([0, 2])] == ["a", "c"]
    assert items[torch.tensor([1, 1])] == ["b", "b"]
    mask = [True, False, False, True]
    assert items[mask] == items[np.array(mask)] == items[torch.tensor(mask)] == ["a", "d"]
    with pytest.raises(IndexError, match="one value per item"):
        items[[True, False]]
    with pytest.raises(IndexError, match="integers"):
        items[[0.5]]
    items[[0, 1]] = ["x", "y"]
    assert items == ["x", "y", "c", "d"]


def test_the_books_helpers():
    pairs = L((1, "one"), (2, "two"), (3, "three"))
    assert pairs.itemgot(1) == ["one", "two", "three"] and pairs.itemgot(1, 0) == ["o", "t", "t"]
    assert L(3, 1, 2).map(lambda x: x * 10) == [30, 10, 20]
    assert L(1, 2, 3, 4).filter(lambda x: x % 2) == [1, 3]
    assert L(1, 2, 3, 4).filter(lambda x: x % 2, negate=True) == [2, 4]
    assert L(0, 1, "", "a").filter() == [1, "a"]
    assert L(5, 6, 7, 8).argwhere(lambda x: x > 6) == [2, 3]
    assert L(3, 1, 2).sorted() == [1, 2, 3] and L(3, 1, 2).sorted(reverse=True) == [3, 2, 1]
    assert pairs.sorted(1).itemgot(0) == [1, 3, 2] and L("bb", "a").sorted(len) == ["a", "bb"]
    assert L(2, 1, 2, 3, 1).unique() == [2, 1, 3] and L(2, 1, 2).unique(sort=True) == [1, 2]
    assert L("a", "b").enumerate() == [(0, "a"), (1, "b")]
    assert L([1, 2], ["a", "b"]).zip() == [(1, "a"), (2, "b")]
    assert L([1, 2], 3, (4, 5)).concat() == [1, 2, 3, 4, 5]
    assert L(1, 2, 3).sum() == 6 and L().sum() == 0 and L(2, 3).product() == 6
    assert L.range(3) == [0, 1, 2] and L.range(2, 5) == [2, 3, 4] and L.range(["a", "b"]) == [0, 1]
    assert L((1, 2), (3, 4)).starmap(lambda a, b: a * b) == [2, 12]


def test_attrgot_reads_attributes_and_dict_keys():
    files = L(Path("a/x.jpg"), Path("b/y.png"))
    assert files.attrgot("suffix") == [".jpg", ".png"] and files.attrgot("nope", 0) == [0, 0]
    assert L({"k": 1}, {"j": 2}).attrgot("k") == [1, None]


def test_results_stay_ls_and_survive_copy_and_pickle():
    items = L(1, 2)
    for result in (items + [3], [0] + items, items * 2, items.copy(), items.map(str), items.sorted(),
                   copy.deepcopy(items), pickle.loads(pickle.dumps(items))):
        assert isinstance(result, L), type(result)
    assert [0] + items == [0, 1, 2]


# --- listings return L ---------------------------------------------------------------------------------
def _images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4), "red").save(folder / name)
    return [folder / n for n in names]


def test_file_listings_are_ls(tmp_path):
    _images(tmp_path / "cats", ["b.jpg", "a.png"])
    (tmp_path / "notes.txt").write_text("x")
    files = get_image_files(tmp_path)
    assert isinstance(files, L) and isinstance(get_files(tmp_path), L)
    assert files.map(lambda f: f.name) == ["a.png", "b.jpg"]
    assert files.attrgot("parent").map(lambda p: p.name).unique() == ["cats"]


def test_verify_images_then_unlink_the_failures_as_in_the_book(tmp_path):
    good = _images(tmp_path, ["good.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    failed = verify_images(get_image_files(tmp_path))
    assert isinstance(failed, L) and failed == [tmp_path / "broken.jpg"]
    failed.map(Path.unlink)
    assert get_image_files(tmp_path) == good


# --- Path.ls -----------------------------------------------------------------------------------------
def test_path_ls_sorts_filters_and_caps(tmp_path):
    for name in ("b.csv", "a.txt", "C.CSV", "pic.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    listing = path_ls(tmp_path)
    assert isinstance(listing, L) and [p.name for p in listing] == ["C.CSV", "a.txt", "b.csv", "pic.png", "sub"]
    assert [p.name for p in path_ls(tmp_path, file_exts=".csv")] == ["C.CSV", "b.csv"]
    assert [p.name for p in path_ls(tmp_path, file_exts=["csv", ".txt"])] == ["C.CSV", "a.txt", "b.csv"]
    assert [p.name for p in path_ls(tmp_path, file_type="image")] == ["pic.png"]
    assert len(path_ls(tmp_path, n_max=2)) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        path_ls(tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match="is a file"):
        path_ls(tmp_path / "a.txt")


def test_star_import_gives_path_ls_once(tmp_path):
    """Only the star-import surfaces patch pathlib.Path; patching again (or over another library's ls) is a no-op."""
    (tmp_path / "b").write_text("x")
    (tmp_path / "a").write_text("x")
    script = ("import pathlib, sys\n"
              "import lamina.data.files, lamina.learner\n"
              "assert not hasattr(pathlib.Path, 'ls'), 'the lower layers must not patch Path'\n"
              "from lamina.vision.all import *\n"
              "first = pathlib.Path.ls\n"
              "from lamina.foundation import patch_path_ls; patch_path_ls()\n"
              "assert pathlib.Path.ls is first\n"
              f"print(Path({str(tmp_path)!r}).ls().sorted().map(lambda p: p.name))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(#2) ['a','b']"


def test_patch_keeps_an_ls_another_library_installed(monkeypatch):
    def other_ls(self):
        return "theirs"

    monkeypatch.setattr(Path, "ls", other_ls, raising=False)
    patch_path_ls()
    assert Path(".").ls() == "theirs"


# --- Module ------------------------------------------------------------------------------------------
class DotProductBias(Module):
    """Chapter 8's model, written as the book writes it: no ``super().__init__()``."""

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = nn.Embedding(n_users, n_factors)
        self.user_bias = nn.Embedding(n_users, 1)
        self.movie_factors = nn.Embedding(n_movies, n_factors)
        self.movie_bias = nn.Embedding(n_movies, 1)
        self.y_range = y_range

    def forward(self, x):
        users, movies = self.user_factors(x[:, 0]), self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1, keepdim=True) + self.user_bias(x[:, 0]) + self.movie_bias(x[:, 1])
        low, high = self.y_range
        return torch.sigmoid(res) * (high - low) + low


def test_module_without_super_init_registers_and_trains():
    torch.manual_seed(0)
    x = torch.stack([torch.randint(0, 6, (64,)), torch.randint(0, 8, (64,))], 1)
    y = (x[:, :1] % 3 + x[:, 1:] % 2 + 1).float()
    model = DotProductBias(6, 8, 4)
    assert len(list(model.parameters())) == 4 and "user_factors" in dict(model.named_children())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    twin = copy.deepcopy(model)
    assert torch.equal(twin(x), model(x)) and len(list(twin.parameters())) == 4
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))


def test_module_with_super_init_keeps_what_it_registered():
    class Late(Module):
        def __init__(self):
            self.first = nn.Linear(2, 2)
            super().__init__()  # must not drop `first`
            self.second = nn.Linear(2, 1)

    assert [name for name, _ in Late().named_children()] == ["first", "second"]
