"""fastcore's small helpers the book and tutorials use from a star import (lamina.book_helpers), and the shared
`defaults` namespace."""

import os
import threading
from pathlib import Path

import pytest

from lamina.basics import L
from lamina.book_helpers import (ProcessPoolExecutor, Self, ThreadPoolExecutor, TitledStr, add_props, doc, is_listy,
                                 progress_bar, true, uniqueify)
from lamina.book_tools import defaults, parallel


def test_self_stands_for_a_lambda_on_its_argument():
    files = L([Path("/data/cats/1.jpg"), Path("/data/dogs/2.jpg")])
    assert list(files.map(Self.parent.name())) == ["cats", "dogs"]  # the book's chapter 19 line
    assert Self.upper()("ab") == "AB" and Self.split(",", maxsplit=1)("a,b,c") == ["a", "b,c"]
    assert Self.real()(3 + 4j) == 3.0  # a call recorded on a plain value leaves the value
    assert "Self.parent.name" in repr(Self.parent.name())
    assert Self[0]("ab") == "a" and Self.split(",")[1]("a,b") == "b"
    with pytest.raises(TypeError, match="applied to one object"):
        Self.upper()("a", "b")


def test_uniqueify_is_listy_true():
    assert uniqueify(["dog", "cat", "dog"]) == ["dog", "cat"]
    assert uniqueify(["dog", "cat", "dog"], sort=True, bidir=True) == (["cat", "dog"], {"cat": 0, "dog": 1})
    assert uniqueify([3, 1, 3], start=[9]) == [9, 3, 1]
    assert [is_listy(x) for x in ((1,), [1], {1}, L([1]), slice(1), (i for i in []), "ab", range(3), 5)] == \
        [True] * 6 + [False] * 3
    assert [true(x) for x in ([], [0], 0, None, "a", "")] == [False, True, False, False, True, False]


def test_add_props_makes_indexed_properties():
    class Pair:
        def __init__(self):
            self.items = [1, 2]
        first, second = add_props(lambda i, self: self.items[i],
                                  lambda i, self, v: self.items.__setitem__(i, v))

    p = Pair()
    p.second = 5
    assert (p.first, p.second, p.items) == (1, 5, [1, 5])


def _worker_id(x, k=0):
    return (os.getpid(), threading.get_ident()), x + k


def _fails_on_two(x):
    if x == 2:
        raise ValueError("two")
    return x


@pytest.mark.parametrize("pool", [ProcessPoolExecutor, ThreadPoolExecutor])
def test_pools_pass_extra_arguments_and_run_serially_at_zero(pool, monkeypatch):
    here = (os.getpid(), threading.get_ident())
    with pool(0) as ex:
        results = list(ex.map(_worker_id, [1, 2], k=10))
    assert [r for _, r in results] == [11, 12] and {w for w, _ in results} == {here}
    with pool(2) as ex:
        results = list(ex.map(_worker_id, [1, 2], 5))  # f(*args, item): 5 comes first, as in fastcore
        assert [r for _, r in results] == [6, 7] and here not in {w for w, _ in results}
        got = list(ex.map(_fails_on_two, [1, 2, 3], return_exceptions=True))
        assert got[::2] == [1, 3] and isinstance(got[1], ValueError)
    monkeypatch.setattr(defaults, "cpus", 0)  # read when the pool is made
    with pool() as ex:
        assert ex.serial
    with pytest.raises(ValueError, match="max_workers must be 0"):
        pool(-1)


def test_defaults_is_one_namespace_read_by_parallel_and_the_loaders(monkeypatch):
    import lamina.text.all as text
    import lamina.vision.all as vision
    from lamina.data.dataloader import default_num_workers
    assert vision.defaults is text.defaults is defaults
    assert defaults.cpus >= 1 and defaults.text_spec_tok[0] == "xxunk"
    monkeypatch.setattr(defaults, "cpus", 0)  # fastai users set it to load and map without worker processes
    assert {w for w, _ in parallel(_worker_id, [1, 2, 3])} == {(os.getpid(), threading.get_ident())}
    assert default_num_workers() == 0
    monkeypatch.setattr(defaults, "cpus", 32)
    assert default_num_workers() == 8


def test_text_defaults_keep_what_a_user_set_before():
    import lamina.text.core as core
    ns = type(defaults)(text_proc_rules=["mine"])
    core._set_text_defaults(ns, keep=True)
    assert ns.text_proc_rules == ["mine"] and ns.text_spec_tok[0] == "xxunk"
    assert core.TextDefaults().text_proc_rules[0] is core.fix_html


def test_progress_bar_iterates_counts_and_comments():
    bar = progress_bar(iter(range(3)), total=3, display=False, leave=False)
    assert bar.total == 3 and list(bar) == [0, 1, 2]
    bar.comment = "epoch 1"
    assert bar.comment == "epoch 1" and "epoch 1" in str(bar._bar.postfix)
    assert len(progress_bar(range(4), display=False)) == 4


def test_titled_str_shows_on_an_axis_a_series_or_prints(capsys):
    import matplotlib.pyplot as plt
    import pandas as pd
    fig, ax = plt.subplots()
    try:
        assert TitledStr("first").show(ctx=ax, label="text") is ax
        TitledStr("second").show(ctx=ax, figsize=(2, 2))
        assert ax.get_title() == "first\nsecond"
    finally:
        plt.close(fig)
    row = TitledStr("a review").show(ctx=pd.Series({"label": "pos"}), label="text")
    assert row.to_dict() == {"label": "pos", "text": "a review"}
    assert TitledStr("a review").upper() == "A REVIEW"
    TitledStr("printed").show()
    doc(uniqueify)
    out = capsys.readouterr().out
    assert out.startswith("printed\nuniqueify(x") and "first-seen order" in out
