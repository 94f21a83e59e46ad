"""TabularModel: structure per fastai's description, forward shapes, options, errors."""

import json

import pytest
import torch
from torch import nn

from lamina.models.layers import Embedding, SigmoidRange
from lamina.models.activations import activation_config
from lamina.models.tabular import TabularModel, tabular_config


@pytest.fixture
def one_thread():
    """One intra-op thread while the training test runs: a tiny model only loses time to thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(emb_szs, n_cont, bs=8):
    cats = torch.stack([torch.randint(0, ni, (bs,)) for ni, _ in emb_szs], 1)
    return cats, torch.randn(bs, n_cont)


def test_structure_matches_the_reference_layout():
    emb_szs = [(10, 6), (4, 3)]
    model = TabularModel(emb_szs, n_cont=3, out_sz=2, layers=[200, 100])
    assert [type(e) for e in model.embeds] == [Embedding, Embedding]
    assert [tuple(e.weight.shape) for e in model.embeds] == [(10, 6), (4, 3)]
    assert isinstance(model.bn_cont, nn.BatchNorm1d) and model.bn_cont.num_features == 3
    hidden, last = model.layers[:-1], model.layers[-1]
    # lin_first blocks: Linear(no bias) -> ReLU -> BatchNorm1d(n_out); no Dropout module when p=0
    for block, (n_in, n_out) in zip(hidden, [(12, 200), (200, 100)]):
        lin, act, bn = block
        assert (lin.in_features, lin.out_features, lin.bias) == (n_in, n_out, None)
        assert isinstance(act, nn.ReLU) and isinstance(bn, nn.BatchNorm1d) and bn.num_features == n_out
    assert len(last) == 1 and isinstance(last[0], nn.Linear) and last[0].bias is not None
    assert (last[0].in_features, last[0].out_features) == (100, 2)


def test_forward_shapes_and_y_range():
    emb_szs = [(5, 4), (7, 5)]
    model = TabularModel(emb_szs, 2, 1, [16], y_range=(0.5, 5.5)).eval()
    assert isinstance(model.layers[-1], SigmoidRange)
    out = model(*_inputs(emb_szs, 2))
    assert out.shape == (8, 1) and (out > 0.5).all() and (out < 5.5).all()


def test_forward_is_documented():
    assert "x_cat" in TabularModel.forward.__doc__ and "x_cont" in TabularModel.forward.__doc__


def test_only_categorical_or_only_continuous_inputs():
    cats_only = TabularModel([(5, 4)], 0, 3, [8])
    assert cats_only(torch.randint(0, 5, (4, 1)), torch.zeros(4, 0)).shape == (4, 3)
    conts_only = TabularModel([], 3, 2, [8])
    assert conts_only(torch.zeros(4, 0, dtype=torch.long), torch.randn(4, 3)).shape == (4, 2)
    with pytest.raises(ValueError, match="at least one input"):
        TabularModel([], 0, 2, [8])


def test_dropouts_bn_final_and_activation_by_name():
    model = TabularModel([(5, 4)], 2, 2, [8, 8], ps=[0.1, 0.2], embed_p=0.3, bn_final=True, act_cls="GELU")
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.1, 0.2]
    assert isinstance(model.layers[-1][1], nn.BatchNorm1d)
    assert all(isinstance(block[1], nn.GELU) for block in model.layers[:-1])
    assert [m.p for m in TabularModel([(5, 4)], 2, 2, [8, 8], ps=0.5).modules() if isinstance(m, nn.Dropout)][1:] \
        == [0.5, 0.5]
    with pytest.raises(ValueError, match="one dropout per hidden layer"):
        TabularModel([(5, 4)], 2, 2, [8, 8], ps=[0.1])
    with pytest.raises(ValueError, match="act_cls"):
        TabularModel([(5, 4)], 2, 2, [8], act_cls="Nope")


def test_tabular_config_and_activation_names():
    cfg = tabular_config(ps=0.1, embed_p=0.05)
    assert cfg["ps"] == 0.1 and cfg["embed_p"] == 0.05 and cfg["lin_first"] is True and cfg["bn_cont"] is True
    model = TabularModel([(5, 4)], 2, 2, [8], **cfg)
    assert model.emb_drop.p == 0.05
    assert cfg["act_cls"] == "ReLU" and isinstance(model.layers[0][1], nn.ReLU) and model.layers[0][1].inplace


def test_activation_settings_survive_a_json_description():
    slope = nn.LeakyReLU(0.5)
    model = TabularModel([(5, 4)], 2, 2, [8, 8], act_cls=slope)
    assert all(block[1] is slope for block in model.layers[:-1])  # the user's module itself
    spec = json.loads(json.dumps(activation_config(slope)))
    rebuilt = TabularModel([(5, 4)], 2, 2, [8, 8], act_cls=spec)
    assert [b[1].negative_slope for b in rebuilt.layers[:-1]] == [0.5, 0.5]
    rebuilt.load_state_dict(model.state_dict())
    x = (torch.randint(0, 5, (6, 1)), torch.randn(6, 2))
    torch.testing.assert_close(rebuilt.eval()(*x), model.eval()(*x))


@pytest.mark.usefixtures("one_thread")
def test_trains_on_a_separable_problem():
    torch.manual_seed(0)
    cats = torch.randint(0, 4, (256, 1))
    conts = torch.randn(256, 2)
    y = ((cats[:, 0] >= 2) ^ (conts[:, 0] > 0)).long()
    model = TabularModel([(4, 3)], 2, 2, [32, 16])
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(cats, conts), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.15


def _per_table_copy(model):
    import copy
    twin = copy.deepcopy(model)
    twin.fuse_embeds = False
    return twin


def test_fused_embeddings_equal_the_per_table_lookup_forward_and_backward():
    torch.manual_seed(0)
    emb_szs = [(10, 6), (17, 8), (3, 3)]
    model = TabularModel(emb_szs, 2, 2, [16])
    twin = _per_table_copy(model)
    assert model.fuse_embeds and not twin.fuse_embeds
    cats, conts = _inputs(emb_szs, 2, bs=32)
    cats[0] = torch.tensor([9, 16, 2])  # the last code of every table
    out, twin_out = model(cats, conts), twin(cats, conts)
    assert torch.equal(out, twin_out)  # exactly one table entry per output, zeros elsewhere
    torch.nn.functional.cross_entropy(out, torch.arange(32) % 2).backward()
    torch.nn.functional.cross_entropy(twin_out, torch.arange(32) % 2).backward()
    for e, t in zip(model.embeds, twin.embeds):
        torch.testing.assert_close(e.weight.grad, t.weight.grad)
    model.eval(), twin.eval()
    assert torch.equal(model(cats, conts), twin(cats, conts))


def test_codes_outside_their_table_raise_instead_of_reading_a_neighbour():
    model = TabularModel([(4, 3), (5, 3)], 0, 2, [8]).eval()
    for bad in ([4, 0], [0, 5], [-1, 0], [1, -1]):
        with pytest.raises(IndexError):
            model(torch.tensor([bad, [1, 1]]))
    assert model(torch.tensor([[3, 4], [0, 0]])).shape == (2, 2)


def test_big_tables_hooks_and_replaced_modules_are_looked_up_table_by_table():
    big = TabularModel([(5000, 100), (10, 4)], 0, 2, [8])
    assert not big.fuse_embeds  # a block-diagonal table of 5010 x 104 entries would cost more than it saves
    model = TabularModel([(5, 4), (7, 5)], 1, 2, [8]).eval()
    seen = []
    model.embeds[1].register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    cats, conts = _inputs([(5, 4), (7, 5)], 1, bs=3)
    model(cats, conts)
    assert seen == [(3, 5)]
    scaled = TabularModel([(5, 4)], 1, 2, [8]).eval()
    plain = scaled(cats[:, :1], conts)

    class Doubled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return 2 * self.inner(x)
    scaled.embeds[0] = Doubled(scaled.embeds[0])
    assert not torch.equal(scaled(cats[:, :1], conts), plain)  # the replacement's forward is used


def test_embedding_dropout_runs_only_when_it_drops_something(monkeypatch):
    torch.manual_seed(0)
    model = TabularModel([(5, 4)], 0, 2, [8], embed_p=0.5)
    calls = []
    real = nn.functional.dropout
    monkeypatch.setattr(nn.functional, "dropout", lambda x, *a, **k: calls.append(1) or real(x, *a, **k))
    cats = torch.randint(0, 5, (16, 1))
    model(cats)
    model.eval()(cats)
    assert calls == [1]  # in training only
    model.emb_drop.p = 0.0
    model.train()(cats)
    assert calls == [1]
    model.emb_drop.register_forward_hook(lambda *args: calls.append("hook"))
    model(cats)
    assert calls == [1, 1, "hook"]  # a hooked dropout is always called
