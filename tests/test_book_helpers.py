"""fastcore's small helpers the book and tutorials use from a star import (lamina.book_helpers), and the shared
`defaults` namespace."""

import os
from pathlib import Path

import pytest

from lamina.basics import L
from lamina.book_helpers import (ProcessPoolExecutor, Self, ThreadPoolExecutor, TitledStr, add_props, doc, is_listy,
                                 progress_bar, true, uniqueify)
from lamina.book_tools import defaults, parallel


def _pid_plus(x, k=0):
    return os.getpid(), x + k


def test_self_stands_for_a_lambda_on_its_argument():
    files = L([Path("/data/cats/1.jpg"), Path("/data/dogs/2.jpg")])
    assert list(files.map(Self.parent.name())) == ["cats", "dogs"]  # the book's chapter 19 line
    assert Self.upper()("ab") == "AB" and Self.split(",", maxsplit=1)("a,b,c") == ["a", "b,c"]
    assert Self.real()(3 + 4j) == 3.0  # a call recorded on a plain value leaves the value
    assert "Self.parent.name" in repr(Self.parent.name())
    with pytest.raises(TypeError, match="applied to one object"):
        Self.upper()("a", "b")


def test_uniqueify_is_listy_true():
    assert uniqueify(["dog", "cat", "dog"]) == ["dog", "cat"]
    assert uniqueify(["dog", "cat", "dog"], sort=True, bidir=True) == (["cat", "dog"], {"cat": 0, "dog": 1})
    assert uniqueify([3, 1, 3], start=[9]) == [9, 3, 1]
    assert [is_listy(x) for x in ((1,), [1], L([1]), slice(1), (i for i in []), "ab", range(3), 5)] == \
        [True] * 5 + [False] * 3
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


@pytest.mark.parametrize("pool", [ProcessPoolExecutor, ThreadPoolExecutor])
def test_pools_pass_extra_arguments_and_run_serially_at_zero(pool):
    with pool(0) as ex:
        results = list(ex.map(_pid_plus, [1, 2], k=10))
    assert [r for _, r in results] == [11, 12] and {p for p, _ in results} == {os.getpid()}
    with pool(2) as ex:
        assert [r for _, r in ex.map(_pid_plus, [1, 2], 5)] == [6, 7]  # f(*args, item): 5 first, as fastcore
    assert pool()._max_workers == max(defaults.cpus, 1)


def test_defaults_is_one_namespace_and_sizes_parallel(monkeypatch):
    import lamina.text.all as text
    import lamina.vision.all as vision
    assert vision.defaults is text.defaults is defaults
    assert defaults.cpus >= 1 and defaults.text_spec_tok[0] == "xxunk"
    monkeypatch.setattr(defaults, "cpus", 0)  # fastai users set it to run without worker processes
    assert {p for p, _ in parallel(_pid_plus, [1, 2, 3])} == {os.getpid()}


def test_progress_bar_titled_str_and_doc(capsys):
    assert list(progress_bar(range(3), comment="loading", display=False)) == [0, 1, 2]
    titled = TitledStr("a review")

    class Axis:
        title = None

        def set_title(self, t):
            self.title = t

    ax = Axis()
    assert titled.show(ctx=ax) is ax and ax.title == "a review" and titled.upper() == "A REVIEW"
    titled.show()
    doc(uniqueify)
    out = capsys.readouterr().out
    assert out.startswith("a review\nuniqueify(x") and "first-seen order" in out
