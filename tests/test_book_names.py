"""What fastai's star imports bring besides its API (standard modules, ``plt``, fastcore's helpers): on every
lamina surface, behaving as the book's code expects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
from torch import nn

from lamina import book_names as bn

SURFACES = ["lamina.basics", "lamina.vision.all", "lamina.tabular.all", "lamina.text.all", "lamina.collab"]


@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_has_the_book_names(surface):
    scope: dict = {}
    exec(f"from {surface} import *", scope)
    for name in ("re", "random", "os", "json", "string", "itertools", "Counter", "defaultdict", "deepcopy",
                 "reduce", "set_trace", "plt", "coll_repr", "params", "store_attr", "patch", "ifnone", "tuplify",
                 "attrgetter", "itemgetter", "defaults", "uniqueify", "is_listy", "Self", "ProcessPoolExecutor",
                 "progress_bar", "TitledStr", "doc", "true", "add_props"):
        assert name in scope, f"{surface} lacks {name}"
    assert scope["copy"]([1]) == [1] and scope["re"].findall(r"(.+)_\d+.jpg$", "great_pyrenees_173.jpg") == \
        ["great_pyrenees"]


def test_plt_imports_pyplot_on_first_use():
    code = ("import sys; from lamina.tabular.all import *; assert 'matplotlib.pyplot' not in sys.modules; "
            "import matplotlib; matplotlib.use('Agg'); fig, ax = plt.subplots(); "
            "assert 'matplotlib.pyplot' in sys.modules and type(fig).__name__.endswith('Figure'); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_coll_repr_ifnone_listify_tuplify():
    assert bn.coll_repr(range(20), 3) == "(#20) [0,1,2...]" and bn.coll_repr(["a"]) == "(#1) ['a']"
    assert bn.coll_repr(range(10**12), 2) == "(#1000000000000) [0,1...]"  # not built whole
    assert bn.coll_repr((x for x in "ab")) == "(#2) ['a','b']"
    assert bn.ifnone(None, 3) == 3 and bn.ifnone(0, 3) == 0
    t = torch.zeros(3)
    assert bn.listify(None) == [] and bn.listify("ab") == ["ab"] and bn.listify(range(3)) == [0, 1, 2]
    assert bn.listify(t)[0] is t and bn.listify(1, 2) == [1, 2] and bn.listify((x for x in "ab")) == ["a", "b"]
    assert bn.listify({"a": 1}) == ["a"] and len(bn.listify(t, use_list=True)) == 3
    assert bn.listify(7, match=3) == [7, 7, 7] and bn.listify([1, 2], match=["x", "y"]) == [1, 2]
    with pytest.raises(ValueError, match="2 values where 3 are needed"):
        bn.listify([1, 2], match=3)
    assert bn.tuplify(True, match=[0, 1, 2]) == (True, True, True) and bn.tuplify([1, 2], use_list=True) == (1, 2)


def test_store_attr_stores_the_method_arguments():
    class Thing:
        def __init__(self, a, b=2, *, c=3):
            bn.store_attr()

    class Some:
        def __init__(me, a, b, c, d=0):  # the object is the first argument, whatever its name
            bn.store_attr("a, c", d=10)
            bn.store_attr(but="a,c,d")

    thing, some = Thing(1), Some(1, 2, 3)
    assert (thing.a, thing.b, thing.c) == (1, 2, 3) and (some.a, some.b, some.c, some.d) == (1, 2, 3, 10)
    with pytest.raises(TypeError, match="inside a method"):
        bn.store_attr()


def test_patch_adds_a_method_to_the_annotated_classes():
    class A:
        pass

    class B:
        pass

    def twice(self: A | B, x: Later):  # noqa: F821  (only the first annotation is read)
        return 2 * x

    def name(self: A | None):
        return "an A"

    assert bn.patch(twice) is twice and A().twice(2) == 4 and B().twice(3) == 6
    assert bn.patch(name) and A().name() == "an A"
    with pytest.raises(TypeError, match="annotation"):
        bn.patch(lambda self: 1)


def test_model_helpers():
    class WithOwnWeight(nn.Sequential):
        def __init__(self, *layers):
            super().__init__(*layers)
            self.weight = nn.Parameter(torch.full((2, 2), 5.0))

    model = WithOwnWeight(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    assert len(bn.params(model)) == 7
    assert [type(m).__name__ for m in bn.flatten_model(model)] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(5.0)
    bn.apply_init(model)
    assert torch.all(model[0].bias == 0) and torch.all(model[2][1].bias == 0)
    assert not torch.all(model[0].weight == 5) and torch.all(model[1].weight == 5)  # normalisation untouched
    assert not torch.all(model.weight == 5)  # a parent's own weight too, as fastai's apply_leaf
    x = bn.trunc_normal_(torch.empty(10_000), mean=1.0, std=0.5)
    assert x.min() > 0.0 and x.max() < 2.0 and abs(x.mean().item() - 1.0) < 0.05


def test_flatten_check():
    a, b = bn.flatten_check(torch.zeros(2, 3), torch.ones(6))
    assert a.shape == b.shape == (6,)
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(5,\)"):
        bn.flatten_check(torch.zeros(2, 3), torch.ones(5))


def test_the_module_list_is_importable():
    for name in ("re", "json", "tarfile", "zipfile", "urllib"):
        assert getattr(bn, name) is importlib.import_module(name)


def test_store_attr_names_what_is_not_an_argument():
    class Thing:
        def __init__(self, a):
            bn.store_attr("a, b")

    with pytest.raises(NameError, match=r"\['b'\] are not arguments of __init__; name its arguments \(a\)"):
        Thing(1)


def _double(o, plus=0):
    return o * 2 + plus


def test_parallel_delegates_getattr_num_cpus_range_of():
    import inspect

    from lamina.vision.all import GetAttr, delegates, num_cpus, parallel, range_of

    assert parallel(_double, range(6), n_workers=2) == [0, 2, 4, 6, 8, 10]  # processes, items' order
    assert parallel(_double, [1, 2], 10, threadpool=True, n_workers=2) == [21, 22]  # f(*args, item), as fastcore
    assert parallel(_double, [3], n_workers=0, plus=1) == [7]
    assert num_cpus() >= 1 and range_of("abc") == [0, 1, 2]

    class Base:
        def __init__(self, a, b=2, c=3):
            self.a, self.b, self.c = a, b, c

    @delegates(Base, but=["c"])
    class Child(Base):
        def __init__(self, x, **kwargs):
            super().__init__(x, **kwargs)

    assert str(inspect.signature(Child)) == "(x, *, b=2)"
    assert Child(1, c=5).c == 5  # only the signature changed

    @delegates()
    class Kept(Base):
        def __init__(self, x, d=1, **kwargs):
            super().__init__(x, **kwargs)

    assert str(inspect.signature(Kept)) == "(x, d=1, *, b=2, c=3)"

    class Wrapper(GetAttr):
        _xtra = ["count", "index"]

        def __init__(self, items):
            self.default = items

    w = Wrapper([1, 1, 2])
    assert w.count(1) == 2 and w.index(2) == 2 and "count" in dir(w)
    with pytest.raises(AttributeError, match="no attribute 'append'"):
        w.append(3)  # not in _xtra
