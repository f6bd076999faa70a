"""ShuffleNet v1 against the paper's Table 1 (counts derived layer by layer here, complexity) and
the authors' released 0.5x widths; ShuffleNet v2 against torchvision (counts, multiply-adds and
logits under transplanted weights); the channel shuffle; train and eval forward passes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import compile_cheaply, torch_parity
from zoo import abstract_variables, count, numpy_variables, rbg_keys

from jaxconv.models import create_model, report, shufflenet
from jaxconv.models.flops import count_macs
from jaxconv.torch_support import import_torch

# Zhang et al. 2018, Table 1: output channels of stages 2-4 and complexity (MFLOPs) per groups g.
TABLE1 = {1: ((144, 288, 576), 143), 2: ((200, 400, 800), 140), 3: ((240, 480, 960), 137),
          4: ((272, 544, 1088), 133), 8: ((384, 768, 1536), 137)}


def v1_params(groups: int, widths: tuple[int, ...], stem: int = 24, classes: int = 1000) -> int:
    """Table 1 and Fig. 2, layer by layer: 3x3 stem conv - BN, then units of 1x1 group conv
    (ungrouped first in stage 2) - BN, 3x3 depthwise - BN, 1x1 group conv - BN (to the width
    less the input's on stride 2, where the pooled input is concatenated); FC with bias."""
    def conv(cin, cout, k=1, g=1):
        return cin // g * cout * k * k

    total, cin = conv(3, stem, 3) + 2 * stem, stem
    for stage, (width, units) in enumerate(zip(widths, (4, 8, 4), strict=True)):
        for unit in range(units):
            mid, out = width // 4, width - cin if unit == 0 else width
            first = 1 if stage == 0 and unit == 0 else groups
            total += conv(cin, mid, 1, first) + 2 * mid + 9 * mid + 2 * mid
            total += conv(mid, out, 1, groups) + 2 * out
            cin = width
    return total + cin * classes + classes


@pytest.mark.parametrize('groups', sorted(TABLE1))
def test_v1_params_and_complexity_follow_table1(groups):
    widths, mflops = TABLE1[groups]
    model = create_model(f'shufflenet_v1_g{groups}')
    assert count(abstract_variables(model)['params']) == v1_params(groups, widths)
    # Table 1's complexities leave out the FC layer: with it none of the five rounds right.
    convs = count_macs(model, 224) - widths[-1] * 1000
    assert abs(convs / 1e6 - mflops) <= 0.5


# ShuffleNet 0.5x as the authors released it (megvii-model/ShuffleNet-Series, ShuffleNetV1):
# stem and stage widths 12/120/240/480 for g = 3 and 16/192/384/768 for g = 8.
@pytest.mark.parametrize('groups,stem,widths', [(3, 12, (120, 240, 480)),
                                                (8, 16, (192, 384, 768))])
def test_v1_half_width_matches_the_released_models(groups, stem, widths):
    model = create_model(f'shufflenet_v1_g{groups}_x0_5')
    assert count(abstract_variables(model)['params']) == v1_params(groups, widths, stem)


def test_channel_shuffle_is_reshape_transpose_flatten():
    x = jnp.arange(6.0).reshape(1, 1, 1, 6)  # Channels (g=3 groups of 2): 0 1 | 2 3 | 4 5.
    assert shufflenet.channel_shuffle(x, 3)[0, 0, 0].tolist() == [0, 2, 4, 1, 3, 5]


V2_NAMES = ['shufflenet_v2_x0_5', 'shufflenet_v2_x1_0', 'shufflenet_v2_x1_5',
            'shufflenet_v2_x2_0']


@pytest.mark.parametrize('name', V2_NAMES)
def test_v2_params_and_multiply_adds_match_torchvision(name):
    _, torchvision, _ = import_torch()
    meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
    model = create_model(name)
    assert count(abstract_variables(model)['params']) == meta['num_params']
    assert round(count_macs(model, 224) / 1e9, 3) == meta['_ops']  # GMACs, to 3 decimals.


@pytest.mark.parametrize('name', ['shufflenet_v2_x0_5', 'shufflenet_v2_x2_0'])
def test_v2_logits_match_torchvision(name):
    assert torch_parity('torchvision', name, resolution=64) <= 1e-4


@pytest.mark.parametrize('name', ['shufflenet_v1_g8_x0_25', 'shufflenet_v2_x0_5'])
def test_train_and_eval_forward(name):
    # Dropout, not drop path: drop path's random draws would double the compile time (its rates
    # are tested below, DropPath itself with the residual families).
    model = create_model(name, num_classes=10, dropout_rate=0.2)
    variables = numpy_variables(model, 32)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 3)), jnp.float32)
    def train_step(v, x, rngs):
        return model.apply(v, x, train=True, rngs=rngs, mutable=['batch_stats'])

    train = compile_cheaply(train_step, variables, x, rbg_keys(0))
    logits, state = train(variables, x, rbg_keys(0))
    other, _ = train(variables, x, rbg_keys(2))
    assert logits.shape == (4, 10) and np.isfinite(logits).all()
    assert not np.allclose(logits, other)
    assert jax.tree.structure(state['batch_stats']) == jax.tree.structure(
        variables['batch_stats'])
    evaluate = compile_cheaply(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert np.array_equal(evaluate(variables, x), evaluate(variables, x))


def test_v1_residual_units_get_their_drop_path_rate():
    """The 'block' rule over the 16 units; the stride-2 units have no residual to drop."""
    rates = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, shufflenet.ShuffleUnitV1) and context.module.strides == 1:
            rates.append(context.module.drop_path_rate)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        abstract_variables(create_model('shufflenet_v1_g3_x0_25', drop_path_rate=0.3))
    expected = [0.3 * i / 15 for i in range(16) if i not in (0, 4, 12)]
    assert np.allclose(rates, expected)


def test_report_accounts_for_every_parameter(capsys):
    assert report.main(['shufflenet_v2_x0_5', '--num-classes', '10', '--resolution', '64']) == 0
    out = capsys.readouterr().out
    # torchvision's 1,366,792 with a 10-class FC on the 1024 features instead of 1000 classes.
    params = 1_366_792 - (1024 * 1000 + 1000) + (1024 * 10 + 10)
    assert f'total params: {params:,}' in out and 'of which' not in out  # Every row counted.
    assert 'stage2_0/branch1_0/conv' in out and 'fc ' in out


def test_v2_has_no_drop_path_knob():
    with pytest.raises(TypeError, match='valid fields'):
        create_model('shufflenet_v2_x1_0', drop_path_rate=0.1)
