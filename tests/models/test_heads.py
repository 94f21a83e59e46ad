"""create_head and HeadConfig: the layers, dropouts and options of the classification head."""

import pytest
import torch
from torch import nn

from lamina.models.heads import HeadConfig, create_head, head_dropouts
from lamina.models.layers import AdaptiveConcatPool2d, Flatten, SigmoidRange


def _describe(head):
    out = []
    for m in head:
        if isinstance(m, nn.Linear):
            out.append(("Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("BatchNorm1d", m.num_features))
        elif isinstance(m, nn.Dropout):
            out.append(("Dropout", m.p))
        else:
            out.append((type(m).__name__,))
    return out


def test_default_head_matches_the_resnet34_head():
    head = create_head(512, 37)
    assert _describe(head) == [
        ("AdaptiveConcatPool2d",), ("Flatten",), ("BatchNorm1d", 1024), ("Dropout", 0.25),
        ("Linear", 1024, 512, False), ("ReLU",), ("BatchNorm1d", 512), ("Dropout", 0.5), ("Linear", 512, 37, False)]
    assert isinstance(head[0], AdaptiveConcatPool2d) and isinstance(head[1], Flatten)
    assert head.eval()(torch.randn(3, 512, 7, 7)).shape == (3, 37)


def test_concat_pool_is_max_then_average():
    x = torch.randn(2, 4, 5, 5)
    pooled = create_head(4, 2)[0](x)
    assert torch.equal(pooled[:, :4, 0, 0], x.amax(dim=(2, 3)))
    assert torch.allclose(pooled[:, 4:, 0, 0], x.mean(dim=(2, 3)))


def test_average_pool_and_no_pool():
    avg = create_head(64, 3, concat_pool=False)
    assert isinstance(avg[0], nn.AdaptiveAvgPool2d) and _describe(avg)[2] == ("BatchNorm1d", 64)
    vectors = create_head(64, 3, pool=False)
    assert _describe(vectors)[0] == ("BatchNorm1d", 64)
    assert vectors.eval()(torch.randn(2, 64)).shape == (2, 3)


def test_lin_ftrs_and_the_dropout_rule():
    head = create_head(16, 5, lin_ftrs=[32, 8], ps=0.4)
    linears = [d for d in _describe(head) if d[0] == "Linear"]
    assert [(d[1], d[2]) for d in linears] == [(32, 32), (32, 8), (8, 5)]
    assert [d[1] for d in _describe(head) if d[0] == "Dropout"] == [0.2, 0.2, 0.4]
    assert head_dropouts([0.1, 0.2, 0.3], 3) == [0.1, 0.2, 0.3]
    assert head_dropouts(0.5, 2) == [0.25, 0.5]
    with pytest.raises(ValueError, match="one dropout per linear layer"):
        create_head(16, 5, lin_ftrs=[32], ps=[0.1, 0.2, 0.3])
    no_dropout = create_head(16, 5, ps=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout)


def test_first_bn_bn_final_and_y_range():
    head = create_head(8, 2, first_bn=False, bn_final=True, y_range=(-1.0, 3.0))
    desc = _describe(head)
    assert desc[2] == ("Dropout", 0.25) and desc[3] == ("Linear", 16, 512, True)  # no norm: the linear has a bias
    assert isinstance(head[-2], nn.BatchNorm1d) and head[-2].momentum == 0.01 and head[-2].num_features == 2
    assert isinstance(head[-1], SigmoidRange)
    out = head.eval()(torch.randn(4, 8, 3, 3) * 100)
    assert out.min() >= -1.0 and out.max() <= 3.0


def test_lin_first_puts_the_linear_layer_first_in_each_block():
    head = create_head(8, 3, lin_first=True)
    assert [d[0] for d in _describe(head)[2:]] == ["Linear", "ReLU", "BatchNorm1d", "Dropout",
                                                   "Linear", "BatchNorm1d", "Dropout"]
    assert head.eval()(torch.randn(2, 8, 4, 4)).shape == (2, 3)


def test_bad_n_out_is_named():
    with pytest.raises(ValueError, match="`n_out` must be a positive integer; received: n_out=0"):
        create_head(8, 0)


def test_block_batch_norms_start_with_a_small_bias():
    head = create_head(8, 3, lin_ftrs=[6], bn_final=True)
    norms = [m for m in head if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 3
    for bn in norms[:2]:  # the LinBnDrop blocks' norms: weight 1, bias 1e-3
        assert torch.all(bn.weight == 1) and torch.allclose(bn.bias, torch.full_like(bn.bias, 1e-3))
    assert torch.all(norms[2].bias == 0)  # bn_final is a plain BatchNorm1d
    lin_first = [m for m in create_head(8, 3, lin_first=True) if isinstance(m, nn.BatchNorm1d)]
    assert all(torch.allclose(bn.bias, torch.full_like(bn.bias, 1e-3)) for bn in lin_first)


def test_head_config_defaults_are_create_heads():
    import inspect
    defaults = {name: p.default for name, p in inspect.signature(create_head).parameters.items()
                if name not in ("nf", "n_out")}
    assert HeadConfig().as_kwargs() == defaults


def test_head_config_takes_its_options_out_of_mixed_kwargs():
    kwargs = {"lin_ftrs": [6], "y_range": (0, 1), "drop_rate": 0.1}
    config = HeadConfig.from_kwargs(kwargs, base=HeadConfig(ps=0.2, lin_ftrs=[99]))
    assert kwargs == {"drop_rate": 0.1}  # what is left goes to the architecture's builder
    assert (config.lin_ftrs, config.y_range, config.ps, config.pool) == ([6], (0, 1), 0.2, True)
    assert HeadConfig.from_kwargs({}) == HeadConfig()


def test_head_config_creates_the_head_create_head_makes():
    config = HeadConfig(concat_pool=False, lin_ftrs=[6], ps=[0.1, 0.3], bn_final=True)
    assert _describe(config.create(8, 3)) == _describe(create_head(8, 3, concat_pool=False, lin_ftrs=[6],
                                                                    ps=[0.1, 0.3], bn_final=True))
    assert _describe(config.create(8, 3))[0] == ("AdaptiveAvgPool2d",)
