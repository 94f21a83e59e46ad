"""Collab models: forward passes against hand computations, y_range, and id lookups with their errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lamina.models.activations import activation_config
from lamina.models.collab import EmbeddingDotBias, EmbeddingNN, embedding_dot_bias, lookup_codes
from lamina.models.tabular import TabularModel, tabular_config

USERS = ["#na#", 10, 20, 30]
ITEMS = ["#na#", "Alien", "Brazil", "Casablanca", "Dune"]


def dot_model(y_range=None):
    torch.manual_seed(0)
    return EmbeddingDotBias.from_classes(4, {"user": USERS, "title": ITEMS}, y_range=y_range)


def test_dot_forward_is_dot_product_plus_biases():
    model = dot_model()
    x = torch.tensor([[1, 2], [3, 4], [2, 1]])
    out = model(x)
    for row, (u, i) in enumerate(x.tolist()):
        expected = (model.u_weight.weight[u] * model.i_weight.weight[i]).sum() + model.u_bias.weight[u, 0] + \
            model.i_bias.weight[i, 0]
        assert out[row].item() == pytest.approx(expected.item(), abs=1e-6)
    assert out.shape == (3,)


def test_dot_y_range_is_a_scaled_sigmoid():
    plain, ranged = dot_model(), dot_model(y_range=(0.5, 5.5))
    with torch.no_grad():  # large weights so raw scores leave the range
        for m in (plain, ranged):
            m.u_weight.weight.mul_(300)
    x = torch.tensor([[1, 1], [2, 3], [3, 4]])
    raw, out = plain(x), ranged(x)
    torch.testing.assert_close(out, torch.sigmoid(raw) * 5 + 0.5)
    assert (out > 0.5).all() and (out < 5.5).all()
    assert ranged.y_range == (0.5, 5.5)


def test_bias_only_forward_drops_the_unknown_side():
    model = dot_model(y_range=(0.0, 5.0))
    x = torch.tensor([[0, 2], [1, 0], [0, 0], [1, 2]])
    user_known, item_known = torch.tensor([False, True, False, True]), torch.tensor([True, False, False, True])
    out = model.forward_bias_only(x, user_known, item_known)
    squash = lambda v: torch.sigmoid(torch.as_tensor(v)) * 5  # noqa: E731
    torch.testing.assert_close(out[0], squash(model.i_bias.weight[2, 0]))
    torch.testing.assert_close(out[1], squash(model.u_bias.weight[1, 0]))
    torch.testing.assert_close(out[2], squash(0.0))
    torch.testing.assert_close(out[3], model(x[3:])[0])


def test_weight_and_bias_map_raw_ids_to_detached_cpu_rows():
    model = dot_model()
    w = model.weight(["Dune", "Alien"])
    assert w.shape == (2, 4) and not w.requires_grad and w.device.type == "cpu"
    torch.testing.assert_close(w, model.i_weight.weight.detach()[[4, 1]])
    b = model.bias([30, 10], is_item=False)
    assert b.shape == (2,) and not b.requires_grad
    torch.testing.assert_close(b, model.u_bias.weight.detach()[[3, 1], 0])
    torch.testing.assert_close(model.weight("Brazil"), model.i_weight.weight.detach()[[2]])
    torch.testing.assert_close(model.bias(torch.tensor([20]), is_item=False), model.u_bias.weight.detach()[[2], 0])


def test_lookups_name_ids_never_seen_in_training():
    model = dot_model()
    with pytest.raises(KeyError, match=r"item id\(s\) were never seen in training \(column 'title'\): 'Eraserhead'"):
        model.weight(["Alien", "Eraserhead"])
    with pytest.raises(KeyError, match=r"user id\(s\) were never seen.*40"):
        model.bias([10, 40], is_item=False)
    with pytest.raises(ValueError, match="no vocabularies.*from_classes"):
        EmbeddingDotBias(4, 3, 3).weight([1])
    with pytest.raises(KeyError, match="never seen"):
        lookup_codes(model.classes["title"], [None], "title")


def test_from_classes_checks_column_names_and_sizes():
    model = EmbeddingDotBias.from_classes(3, {"a": ["#na#", 1], "b": ["#na#", 1, 2]}, user="b", item="a")
    assert model.u_weight.weight.shape == (3, 3) and model.i_weight.weight.shape == (2, 3)
    with pytest.raises(KeyError, match="`user`='c' is not a column"):
        EmbeddingDotBias.from_classes(3, {"a": [1], "b": [2]}, user="c")
    with pytest.raises(ValueError, match="`n_factors` must be a positive integer"):
        EmbeddingDotBias(0, 3, 3)


def test_embedding_nn_forward_matches_hand_computation():
    torch.manual_seed(0)
    model = EmbeddingNN([(4, 3), (5, 2)], layers=[6], y_range=(0.0, 5.0)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        bn = model.layers[0][2]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.tensor([[1, 2], [3, 4]])
    emb = torch.cat([model.embeds[0].weight[x[:, 0]], model.embeds[1].weight[x[:, 1]]], 1)
    lin1, lin2 = model.layers[0][0], model.layers[1][0]
    h = torch.relu(emb @ lin1.weight.T)
    h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = torch.sigmoid(h @ lin2.weight.T + lin2.bias) * 5
    torch.testing.assert_close(model(x), expected)
    assert lin1.bias is None and model(x).shape == (2, 1)


def test_embedding_nn_options():
    model = EmbeddingNN([(4, 3), (5, 2)], layers=[8, 4], ps=[0.1, 0.2], embed_p=0.05, use_bn=False)
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.05, 0.1, 0.2]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert model(torch.tensor([[1, 1], [2, 2]])).shape == (2, 1)
    with pytest.raises(ValueError, match="`ps` needs one dropout per hidden layer"):
        EmbeddingNN([(4, 3), (5, 2)], layers=[8, 4], ps=[0.1])


def test_factories_rebuild_from_json_arguments():
    model = embedding_dot_bias(4, "user", "title", USERS, ITEMS, y_range=[0, 5])
    assert model.y_range == (0.0, 5.0) and list(model.classes["title"]) == ITEMS
    spec = json.loads(json.dumps(activation_config(nn.LeakyReLU(0.5))))
    nn_model = EmbeddingNN([[4, 3], [5, 2]], [6], act_cls=spec, y_range=[0, 5], ps=[0.1])
    assert nn_model.layers[0][1].negative_slope == 0.5 and nn_model.y_range == (0.0, 5.0)


def test_embedding_nn_is_a_tabular_model_taking_its_arguments():
    model = EmbeddingNN([(4, 3), (5, 2)], [6], **tabular_config(ps=[0.1], bn_final=True, act_cls="GELU"))
    assert isinstance(model, TabularModel) and model.n_cont == 0 and model.bn_cont is None
    assert isinstance(model.layers[0][1], nn.GELU) and isinstance(model.layers[-1][1], nn.BatchNorm1d)
    assert model(torch.tensor([[1, 2], [3, 4]])).shape == (2, 1)
    with pytest.raises(TypeError, match="n_factors"):
        EmbeddingNN([(4, 3)], [6], n_factors=3)


@pytest.mark.parametrize("ids", [
    pd.Index(["Dune", "Alien"]).values,  # pandas 3: a StringArray (an ExtensionArray), as in the book's chapter 8
    pd.array(["Dune", "Alien"], dtype="string"), pd.Series(["Dune", "Alien"]), pd.Index(["Dune", "Alien"]),
    np.array(["Dune", "Alien"]), ["Dune", "Alien"], ("Dune", "Alien"), iter(["Dune", "Alien"])])
def test_lookups_take_any_iterable_of_ids(ids):
    model = dot_model()
    torch.testing.assert_close(model.bias(ids), model.i_bias.weight.detach()[[4, 1], 0])


def test_lookups_take_one_id_and_numeric_id_arrays():
    model = dot_model()
    assert model.bias("Dune").shape == (1,) and model.bias(np.str_("Dune")).shape == (1,)
    torch.testing.assert_close(model.bias(np.int64(20), is_item=False), model.u_bias.weight.detach()[[2], 0])
    torch.testing.assert_close(model.bias(np.array(20), is_item=False), model.u_bias.weight.detach()[[2], 0])
    torch.testing.assert_close(model.bias(pd.array([30, 10], dtype="Int64"), is_item=False),
                               model.u_bias.weight.detach()[[3, 1], 0])
    torch.testing.assert_close(model.weight(torch.tensor([[10], [30]]), is_item=False),
                               model.u_weight.weight.detach()[[1, 3]])
