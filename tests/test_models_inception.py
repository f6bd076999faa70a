"""Xception, Inception-v4, Inception-ResNet v1/v2 and BN-Inception (issue 12, part A).

Exact parameter counts against timm, Keras and Chollet 2017, and, for the two networks no library
has, against counts derived below from the papers' figures; the grid sizes the figures print;
multiply-adds against the torch FlopCounter figures of ../shared/reference/params.md; logits
against timm and Keras under transplanted weights; train and eval forward passes; build errors.
Whole networks are only traced (`jax.eval_shape`) or compiled once for parity; forward passes run
reduced-depth variants.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import keras_parity, torch_parity

from jaxconv.convert import get_layout
from jaxconv.models import bn_inception, create_model, report
from jaxconv.models.flops import count_macs
from jaxconv.models.layers import DropPath, drop_path_rates

RNG_NAMES = ('params', 'dropout', 'drop_path')


def rngs(seed: int = 0, impl: str | None = None) -> dict[str, jax.Array]:
    return {name: jax.random.key(seed + i, impl=impl) for i, name in enumerate(RNG_NAMES)}


def num_elements(tree) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


@functools.cache
def traced(name: str, resolution: int) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """(variable shapes, output shape of each top-level module) of `name` at 1000 classes, from
    one abstract initialisation."""
    model = create_model(name)
    shapes = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == '__call__' and len(context.module.path) == 1:
            shapes[context.module.path[0]] = out.shape[1:]
        return out

    def init():
        with nn.intercept_methods(record):
            return model.init(rngs(), jnp.zeros((1, resolution, resolution, 3)), train=False)

    return jax.eval_shape(init), shapes


# Counts derived from the papers' figures: convs have no bias and are followed by BatchNorm with
# a scale and an offset, unless said otherwise.
def conv_bn(cin: int, cout: int, kh: int, kw: int | None = None) -> int:
    return cin * cout * kh * (kw or kh) + 2 * cout


def inception_resnet_v1_count(classes: int = 1000) -> int:
    """Szegedy et al. 2016, Figs. 7 and 10-15, layer by layer. The 1x1 "Linear" conv closing each
    residual block has a bias and no BatchNorm (Sec. 3.2: no BN on top of the summations)."""
    def linear(cin, cout):
        return cin * cout + cout

    stem = (conv_bn(3, 32, 3) + conv_bn(32, 32, 3) + conv_bn(32, 64, 3) + conv_bn(64, 80, 1)
            + conv_bn(80, 192, 3) + conv_bn(192, 256, 3))  # Fig. 14: 35x35x256.
    block_a = (conv_bn(256, 32, 1) + conv_bn(256, 32, 1) + conv_bn(32, 32, 3)  # Fig. 10.
               + conv_bn(256, 32, 1) + 2 * conv_bn(32, 32, 3) + linear(96, 256))
    k, l, m, n = 192, 192, 256, 384  # noqa: E741  (Table 1, Inception-ResNet-v1)
    reduction_a = (conv_bn(256, n, 3) + conv_bn(256, k, 1) + conv_bn(k, l, 3)  # Fig. 7.
                   + conv_bn(l, m, 3))
    width_b = 256 + n + m  # The pool passes its 256 channels through: 896.
    block_b = (conv_bn(width_b, 128, 1) + conv_bn(width_b, 128, 1) + conv_bn(128, 128, 1, 7)
               + conv_bn(128, 128, 7, 1) + linear(256, width_b))  # Fig. 11.
    reduction_b = (conv_bn(width_b, 256, 1) + conv_bn(256, 384, 3)  # Fig. 12.
                   + conv_bn(width_b, 256, 1) + conv_bn(256, 256, 3)
                   + conv_bn(width_b, 256, 1) + conv_bn(256, 256, 3) + conv_bn(256, 256, 3))
    width_c = width_b + 384 + 256 + 256  # 1792.
    block_c = (conv_bn(width_c, 192, 1) + conv_bn(width_c, 192, 1) + conv_bn(192, 192, 1, 3)
               + conv_bn(192, 192, 3, 1) + linear(384, width_c))  # Fig. 13.
    head = width_c * classes + classes
    # Fig. 15: 5 x A, Reduction-A, 10 x B, Reduction-B, 5 x C.
    return stem + 5 * block_a + reduction_a + 10 * block_b + reduction_b + 5 * block_c + head


# Ioffe & Szegedy 2015, Fig. 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3,
# pool projection (0: "pass through"), and the output depth column.
BN_INCEPTION_TABLE = {
    'inception_3a': (64, 64, 64, 64, 96, 32, 256),
    'inception_3b': (64, 64, 96, 64, 96, 64, 320),
    'inception_3c': (0, 128, 160, 64, 96, 0, 576),
    'inception_4a': (224, 64, 96, 96, 128, 128, 576),
    'inception_4b': (192, 96, 128, 96, 128, 128, 576),
    'inception_4c': (160, 128, 160, 128, 160, 128, 608),
    'inception_4d': (96, 128, 192, 160, 192, 128, 608),
    'inception_4e': (0, 128, 192, 192, 256, 0, 1056),
    'inception_5a': (352, 192, 320, 160, 224, 128, 1024),
    'inception_5b': (352, 192, 320, 192, 224, 128, 1024),
}


def bn_inception_count(classes: int = 1000) -> int:
    """Fig. 5 row by row; the first layer is a 7x7/2 separable conv with depth multiplier 8 (the
    appendix): 3 x 8 depthwise 7x7 filters, then a 1x1 conv from 24 to 64 channels."""
    total = 7 * 7 * 3 * 8 + 24 * 64 + 2 * 64 + conv_bn(64, 64, 1) + conv_bn(64, 192, 3)
    cin = 192
    for c1, r3, c3, rd, d3, proj, depth in BN_INCEPTION_TABLE.values():
        assert c1 + c3 + d3 + (proj or cin) == depth  # The table's own output column.
        total += (conv_bn(cin, c1, 1) if c1 else 0) + conv_bn(cin, r3, 1) + conv_bn(r3, c3, 3)
        total += conv_bn(cin, rd, 1) + conv_bn(rd, d3, 3) + conv_bn(d3, d3, 3)
        total += conv_bn(cin, proj, 1) if proj else 0
        cin = depth
    return total + cin * classes + classes


# name: (parameters, parameters + BN moving statistics or None, source), 1000 classes.
COUNTS = {
    'xception': (22_855_952, None, 'Chollet 2017 Table 3; timm legacy_xception'),
    'keras_xception': (22_855_952, 22_910_480, 'Keras Xception: trainable; Applications table'),
    'inception_v4': (42_679_816, None, 'timm inception_v4'),
    'inception_resnet_v2': (55_843_464, None, 'timm inception_resnet_v2'),
    'keras_inceptionresnetv2': (55_813_192, 55_873_736,
                                'Keras InceptionResNetV2: trainable; Applications table'),
    'inception_resnet_v1': (inception_resnet_v1_count(), None, 'derived from Figs. 7, 10-15'),
    'bn_inception': (bn_inception_count(), None, 'derived from Fig. 5'),
}
RESOLUTION = {'bn_inception': 224}  # Traced at the papers' input sizes; the others take 299.


@pytest.mark.parametrize('name', sorted(COUNTS))
def test_parameter_count_is_exact(name):
    params, with_stats, _ = COUNTS[name]
    variables, _ = traced(name, RESOLUTION.get(name, 299))
    assert num_elements(variables['params']) == params
    if with_stats is not None:  # Keras counts BatchNorm's moving mean and variance too.
        assert num_elements(variables['params']) + num_elements(variables['batch_stats']) \
            == with_stats


def test_inception_resnet_v1_costs_about_an_inception_v3():
    """The paper's one figure on the derived network (Sec. 3.1): Inception-ResNet-v1 has "roughly
    the computational cost of Inception-v3" (5,713,216,096 multiply-adds at 299, params.md). A
    missing stage or the release's 10 / 20 / 10 blocks would miss by far more than 10%."""
    assert count_macs(create_model('inception_resnet_v1'), 299) / 5_713_216_096 == \
        pytest.approx(1.0, abs=0.1)


# Output sizes (H, W, C) the papers print: Xception Fig. 5, Inception-v4 Figs. 3 and 9,
# Inception-ResNet-v1 Figs. 14-15, BN-Inception Fig. 5; the released Inception-ResNet-v2's grids
# are 320, 1088 and 2080 wide (TF-slim's comments; timm).
GRIDS = {
    'xception': {'conv2': (147, 147, 64), 'block3': (19, 19, 728), 'block11': (19, 19, 728),
                 'conv4': (10, 10, 2048)},
    'inception_v4': {'Mixed_3a': (73, 73, 160), 'Mixed_4a': (71, 71, 192),
                     'Mixed_5a': (35, 35, 384), 'Mixed_5e': (35, 35, 384),
                     'Mixed_6a': (17, 17, 1024), 'Mixed_6h': (17, 17, 1024),
                     'Mixed_7a': (8, 8, 1536), 'Mixed_7d': (8, 8, 1536)},
    'inception_resnet_v1': {'Conv2d_4b_3x3': (35, 35, 256), 'block35_5': (35, 35, 256),
                            'Mixed_6a': (17, 17, 896), 'block17_10': (17, 17, 896),
                            'Mixed_7a': (8, 8, 1792), 'block8_5': (8, 8, 1792)},
    'inception_resnet_v2': {'Mixed_5b': (35, 35, 320), 'block35_10': (35, 35, 320),
                            'Mixed_6a': (17, 17, 1088), 'block17_20': (17, 17, 1088),
                            'block8_10': (8, 8, 2080), 'Conv2d_7b_1x1': (8, 8, 1536)},
    'bn_inception': {'conv1': (112, 112, 64), 'conv2': (56, 56, 192),
                     **{name: (size, size, BN_INCEPTION_TABLE[name][-1]) for name, size in (
                         ('inception_3a', 28), ('inception_3b', 28), ('inception_3c', 14),
                         ('inception_4a', 14), ('inception_4b', 14), ('inception_4c', 14),
                         ('inception_4d', 14), ('inception_4e', 7), ('inception_5a', 7),
                         ('inception_5b', 7))}},
}


@pytest.mark.parametrize('name', sorted(GRIDS))
def test_grids_match_the_figures(name):
    _, shapes = traced(name, RESOLUTION.get(name, 299))
    assert {module: shapes[module] for module in GRIDS[name]} == GRIDS[name]


@pytest.mark.parametrize('name, reference', [
    ('xception', 8_357_403_496), ('inception_v4', 12_253_974_624),
    ('inception_resnet_v2', 13_155_794_016)])
def test_multiply_adds_match_the_reference(name, reference):
    """params.md's torch FlopCounter figures at 299x299 (timm; Keras' are the same)."""
    assert count_macs(create_model(name), 299) == reference


# Logits parity: smallest inputs the references take (Keras: 71 for Xception, 75 for
# Inception-ResNet-v2); Xception at 75, whose 18x18 map before a strided max pool is where
# PyTorch's and TF's paddings part.
@pytest.mark.parametrize('library, reference, resolution', [
    ('timm', 'legacy_xception', 75), ('timm', 'inception_v4', 75),
    ('timm', 'inception_resnet_v2', 75)])
def test_logits_match_timm(library, reference, resolution):
    assert torch_parity(library, reference, resolution=resolution) <= 1e-4


@pytest.mark.parametrize('application, resolution', [('Xception', 75),
                                                     ('InceptionResNetV2', 75)])
def test_logits_match_keras(application, resolution):
    assert get_layout('keras', application).model == f'keras_{application.lower()}'
    assert keras_parity(application, resolution) <= 1e-4


def test_tf_same_padding_matters_on_even_maps():
    """At 75x75 block2 max-pools an 18x18 map: padded by 1 on every side (PyTorch) and 'SAME'
    (TF: bottom/right only) the windows differ, and the harness sees it."""
    assert torch_parity('timm', 'legacy_xception', resolution=75, tf_same_padding=True) > 1e-2


def numpy_variables(model, x: jax.Array) -> dict:
    """Variables of the right shapes without compiling the initialisers: He-normal kernels,
    unit BN scales and running variances, zero biases and means."""
    shapes = jax.eval_shape(lambda: model.init(rngs(), x, train=False))
    gen = np.random.default_rng(0)

    def fill(path, leaf):
        if path[-1].key == 'kernel':
            std = math.sqrt(2 / math.prod(leaf.shape[:-1]))
            return jnp.asarray(std * gen.standard_normal(leaf.shape, np.float32), leaf.dtype)
        return jnp.full(leaf.shape, path[-1].key in ('scale', 'var'), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


# Reduced-depth variants (every block type present) at small inputs. Keras' Xception and the
# released Inception-ResNet-v2 differ from these only in what eval-mode parity already checks.
FORWARD = [
    ('xception', 32, dict(middle_flow_repeats=1, drop_path_rate=0.4), (3, 1, 1)),
    ('inception_v4', 75, dict(stage_repeats=(1, 1, 1)), None),
    ('inception_resnet_v1', 75, dict(stage_repeats=(1, 1, 2), drop_path_rate=0.4), (1, 1, 2)),
    # 3a (average pool), 3c (strided, pass-through) and 5b (max pool + projection).
    ('bn_inception', 33, dict(blocks=tuple(m for m in bn_inception.MODULES if m.name in (
        'inception_3a', 'inception_3c', 'inception_5b'))), None),
]


@pytest.mark.parametrize('name, size, overrides, stages', FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_in_train_and_eval_mode(name, size, overrides, stages):
    """Eval: finite, from the running statistics, no randomness. Train: BN statistics move, and
    dropout and drop path (at the scheduled rate of each residual block) make two draws differ."""
    model = create_model(name, num_classes=5, **overrides)
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    variables = numpy_variables(model, x)
    rates = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, DropPath) and context.module.rate > 0:
            rates.append(context.module.rate)
        return next_fun(*args, **kwargs)

    def run(variables, x):
        # The eval pass gets the keys too: it must not use them.
        logits = model.apply(variables, x, train=False, rngs=rngs(1, 'rbg'))
        with nn.intercept_methods(record):
            trains = [model.apply(variables, x, train=True, rngs=rngs(s, 'rbg'),
                                  mutable=['batch_stats']) for s in (1, 2)]
        return logits, trains

    # Compiled without XLA's backend optimisations: half the compile time, same numbers.
    run = jax.jit(run).lower(variables, x).compile({'xla_backend_optimization_level': 0})
    logits, ((train1, stats), (train2, _)) = run(variables, x)
    assert logits.shape == (2, 5) and np.isfinite(logits).all() and np.isfinite(train1).all()
    assert not np.allclose(train1, logits)  # Batch statistics, not the running ones.
    moved = jax.tree.map(lambda new, old: bool(jnp.any(new != old)), stats['batch_stats'],
                         variables['batch_stats'])
    assert all(jax.tree_util.tree_leaves(moved))
    random = model.dropout_rate > 0 or getattr(model, 'drop_path_rate', 0) > 0
    assert np.allclose(train1, train2) != random
    if stages is not None:  # Two traced train passes, each with the whole schedule.
        expected = [r for r in sum(drop_path_rates(stages, 0.4), []) if r > 0]
        assert rates == pytest.approx(expected * 2)
    no_rngs = jax.eval_shape(lambda: model.apply(variables, x, train=False))
    assert no_rngs.shape == logits.shape  # Eval needs no random keys at all.


@pytest.mark.parametrize('name, size, minimum', [
    ('xception', 6, 7), ('inception_v4', 74, 75), ('inception_resnet_v1', 74, 75),
    ('keras_inceptionresnetv2', 60, 75)])
def test_too_small_input_fails_at_build_time_in_one_line(name, size, minimum):
    model = create_model(name)
    with pytest.raises(ValueError, match=f'^{name} needs inputs of at least {minimum}x{minimum} '):
        jax.eval_shape(lambda: model.init(rngs(), jnp.zeros((1, size, size, 3))))


def test_knobs_exist_where_their_concept_does():
    """Residual families take drop path; the plain Inceptions name their fields instead."""
    for name in ('xception', 'inception_resnet_v1', 'keras_inceptionresnetv2'):
        assert create_model(name, drop_path_rate=0.1).drop_path_rate == 0.1
    for name in ('inception_v4', 'bn_inception'):
        with pytest.raises(TypeError, match='valid fields: .*bn_momentum'):
            create_model(name, drop_path_rate=0.1)
    model = create_model('inception_resnet_v1', stem='v3')
    with pytest.raises(ValueError, match="unknown stem 'v3'; valid: v1, v2"):
        jax.eval_shape(lambda: model.init(rngs(), jnp.zeros((1, 75, 75, 3))))


def test_report_lists_every_parameter():
    """`python -m jaxconv.models.report bn_inception`: the separable stem as depthwise and
    pointwise rows, and every parameter in some row (else an "of which ..." line says how many
    are missing), the Dense head included."""
    text = report.report('bn_inception', resolution=32)
    assert f'total params: {bn_inception_count():,}\nmultiply-adds: ' in text
    lines = [line.split() for line in text.splitlines()]
    assert ['conv1/depthwise', 'DWConv', '16x16x24', '7x7/2', '1,176'] in lines
    assert ['fc', 'Dense', '1000', '1,025,000'] in lines
