"""The shared knobs of jaxconv/models/base.py across the whole registry.

A ladder switch must mean the same thing in every family that has the concept: every registered
name takes `dropout_rate`; every family with BatchNorm takes `bn_momentum`, `bn_epsilon` and
`bn_group_size`; every family with residual branches `drop_path_rate`; every family with a
published depth/width scaling rule the two multipliers; all others refuse with a TypeError that
names the valid fields. Then each knob is shown to act: it changes the forward pass it should
(train-mode logits for dropout, drop path and BN groups, eval-mode logits for epsilon, the updated
running statistics for momentum, the parameter count for the multipliers). Each family runs as a
tiny configuration of its own class, with weights drawn by NumPy (no init compile).
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.models import create_model, list_models
from jaxconv.models.alexnet import ConvSpec
from jaxconv.models.googlenet import ModuleSpec
from jaxconv.models.layers import DropPath, GroupedBatchNorm
from jaxconv.models.registry import model_fields

BN_KNOBS = ('bn_momentum', 'bn_epsilon', 'bn_group_size', 'bn_frozen')
SCALING_KNOBS = ('depth_multiplier', 'width_multiplier')
ALL_KNOBS = ('dropout_rate', *BN_KNOBS, 'drop_path_rate', *SCALING_KNOBS)

# network class: (registered name, input side, overrides that make it tiny, knobs it must take).
# The knob sets state the papers' architectures: BatchNorm in every family but the pre-2015 ones
# (VGG and GoogLeNet have it in their torchvision variants), residual branches in ResNet (v1, v2),
# the MBConv/inverted-residual nets and FractalNet's joins, scaling rules where a paper or timm
# defines them.
FAMILIES = {
    'AlexNet': ('alexnet_tv', 63, dict(convs=(ConvSpec(8, 11, 4, 2, pool=True),), hidden=(16,)),
                {'dropout_rate'}),
    'VGG': ('vgg11_bn', 4, dict(layers=(8, 'M', 8, 'M'), hidden=(16,), adaptive_pool_size=2),
            {'dropout_rate', *BN_KNOBS}),
    'MiniVGG': ('minivgg', 8, dict(filters=(8,), hidden=16, stage_dropout_rate=0.0),
                {'dropout_rate', *BN_KNOBS}),
    'GoogLeNet': ('googlenet', 15, dict(stages=((ModuleSpec('3a', 8, 8, 8, 4, 4, 4),),),
                                        aux_after=()), {'dropout_rate', *BN_KNOBS}),
    'InceptionV3': ('inception_v3', 75, dict(blocks=(('Mixed_5b', 'A', 8),), aux_logits=False),
                    {'dropout_rate', *BN_KNOBS}),
    'ResNet': ('resnet20', 8, dict(stage_depths=(1, 1), stage_widths=(16, 32)), set(ALL_KNOBS)),
    'PreActResNet': ('preact_resnet20', 8, dict(stage_depths=(1, 1), stage_widths=(8, 16)),
                     set(ALL_KNOBS)),
    'DenseNet': ('densenet_bc100_k12', 4, dict(block_config=(2, 2)),
                 {'dropout_rate', *BN_KNOBS, *SCALING_KNOBS}),
    'EfficientNet': ('efficientnet_b0', 8, dict(stages=((1, 3, 1, 1, 16), (2, 3, 2, 6, 24)),
                                                width_multiplier=0.25),
                     set(ALL_KNOBS)),
    'MobileNetV1': ('mobilenet_v1', 8, dict(stages=((1, 1, 64), (2, 2, 128)),
                                            width_multiplier=0.25),
                    {'dropout_rate', *BN_KNOBS, *SCALING_KNOBS}),
    'MobileNetV2': ('mobilenet_v2', 8, dict(stages=((1, 16, 1, 1), (6, 24, 2, 2)),
                                            width_multiplier=0.25),
                    set(ALL_KNOBS)),
    'SqueezeNet': ('squeezenet1_1', 8, dict(layers=(('conv', 8, 3, 2), ('pool', 3, 3, 2),
                                                    ('fire', 4, 8, 8), ('fire', 4, 8, 8))),
                   {'dropout_rate'}),
    'NiN': ('nin_cifar10', 4, {}, {'dropout_rate'}),
    'LeNet5': ('lenet5', 32, {}, {'dropout_rate'}),
    'FractalNet': ('fractalnet20', 2, dict(filters=(8,), block_dropout_rates=(0.0,),
                                           global_drop_fraction=0.0),
                   {'dropout_rate', *BN_KNOBS, 'drop_path_rate'}),
    'Xception': ('xception', 32, dict(middle_flow_repeats=1),
                 {'dropout_rate', *BN_KNOBS, 'drop_path_rate'}),
    'InceptionV4': ('inception_v4', 75, dict(stage_repeats=(1, 1, 1)),
                    {'dropout_rate', *BN_KNOBS}),
    'InceptionResNet': ('inception_resnet_v2', 75, dict(stage_repeats=(1, 1, 1)),
                        {'dropout_rate', *BN_KNOBS, 'drop_path_rate'}),
    'BNInception': ('bn_inception', 32, {}, {'dropout_rate', *BN_KNOBS}),
    'NASNet': ('nasnetamobile', 32, dict(num_cells=2), {'dropout_rate', *BN_KNOBS,
                                                          'drop_path_rate'}),
    # The last unit residual: the 'block' rule gives it the full rate.
    'ShuffleNetV1': ('shufflenet_v1_g3', 32, dict(stage_depths=(1, 1, 2)), set(ALL_KNOBS)),
    'ShuffleNetV2': ('shufflenet_v2_x1_0', 32, dict(stage_depths=(1, 1, 1)),
                     {'dropout_rate', *BN_KNOBS}),
}
# A value for each knob that differs from every variant's default.
VALUES = {'dropout_rate': 0.9, 'bn_momentum': 0.5, 'bn_epsilon': 1.0, 'bn_group_size': 2,
          'bn_frozen': True,
          'drop_path_rate': 0.9, 'depth_multiplier': 2.0, 'width_multiplier': 2.0}


def test_every_registered_name_takes_exactly_its_families_knobs():
    for name in list_models():
        family = type(create_model(name)).__name__
        assert family in FAMILIES, f'{name}: add its family {family} to FAMILIES'
        expected = FAMILIES[family][3]
        for knob in ALL_KNOBS:
            if knob in expected:
                model = create_model(name, num_classes=10, **{knob: VALUES[knob]})
                assert getattr(model, knob) == VALUES[knob], (name, knob)
            else:
                with pytest.raises(TypeError, match=f"model '{name}'.*{knob}") as error:
                    create_model(name, **{knob: VALUES[knob]})
                assert 'valid fields: ' in str(error.value) and 'dropout_rate' in str(error.value)
        assert expected <= set(model_fields(name))


def tiny(family: str, **knobs):
    name, _, overrides, _ = FAMILIES[family]
    return create_model(name, num_classes=5, **overrides, **knobs)


def built_layers(model, size: int) -> list:
    """Every module instance one training forward pass calls, in order (a trace, no compute)."""
    called = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == '__call__':
            called.append(context.module)
        return next_fun(*args, **kwargs)

    rngs = {k: jax.random.key(0) for k in ('params', 'dropout', 'drop_path')}
    x = jnp.zeros((2, size, size, 3))
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(rngs, x, train=True))
    return called


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_each_knob_reaches_every_layer_it_governs(family):
    """Every BatchNorm layer takes the network's momentum, epsilon and group size (no layer keeps
    a hard-coded value), the dropout before the classifier takes `dropout_rate`, and the deepest
    residual branch drops at `drop_path_rate` (the 'block' rule's full rate)."""
    _, size, _, knobs = FAMILIES[family]
    # Two traces: every knob set at once (values no variant uses), and the defaults with drop
    # path off.
    settings = {'dropout_rate': 0.875, 'drop_path_rate': 0.875, 'bn_momentum': 0.5,
                'bn_epsilon': 0.25, 'bn_group_size': 2, 'bn_frozen': True}
    knobbed = built_layers(tiny(family, **{k: v for k, v in settings.items() if k in knobs}), size)
    default = built_layers(tiny(family, **({'drop_path_rate': 0.0} if 'drop_path_rate' in knobs
                                           else {})), size)

    def of(kind, built):
        return [m for m in built if isinstance(m, kind)]

    if 'bn_momentum' in knobs:
        norms = of((nn.BatchNorm, GroupedBatchNorm), knobbed)
        assert len(norms) == len(of((nn.BatchNorm, GroupedBatchNorm), default)) > 0
        assert {(m.momentum, m.epsilon) for m in norms} == {(0.5, 0.25)}
        assert all(isinstance(m, GroupedBatchNorm) and m.group_size == 2 for m in norms)
        # Fine-tuning's frozen statistics: every BatchNorm uses its running averages in training.
        assert all(m.use_running_average for m in norms)
        assert not any(m.use_running_average for m in of((nn.BatchNorm, GroupedBatchNorm),
                                                          default))
    assert 0.875 in [m.rate for m in of(nn.Dropout, knobbed)]
    assert 0.875 not in [m.rate for m in of(nn.Dropout, default)]
    if 'drop_path_rate' in knobs and family != 'FractalNet':  # FractalNet's joins: see below.
        assert all(m.rate == 0.0 for m in of(DropPath, default))
        assert max(m.rate for m in of(DropPath, knobbed)) == 0.875


def random_variables(model, x: jax.Array) -> dict:
    """Variables of the model's shapes drawn by NumPy: He-scaled kernels, random BN state (so
    that epsilon and momentum have something to act on), small biases."""
    rngs = {k: jax.random.key(0) for k in ('params', 'dropout', 'drop_path')}
    shapes = jax.eval_shape(lambda: model.init(rngs, x, train=True))
    gen = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name == 'kernel':
            return gen.normal(0, math.sqrt(2 / math.prod(leaf.shape[:-1])), leaf.shape)
        low, high = {'scale': (0.5, 1.5), 'var': (0.5, 1.5)}.get(name, (-0.2, 0.2))
        return gen.uniform(low, high, leaf.shape)

    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: jnp.asarray(fill(p, leaf), jnp.float32), shapes)


@functools.partial(jax.jit, static_argnames=('model', 'train'),
                   compiler_options={'xla_backend_optimization_level': 0})
def _apply(model, variables, x, train: bool):
    if not train:
        return model.apply(variables, x, train=False), {}
    rngs = {'dropout': jax.random.key(1, impl='rbg'), 'drop_path': jax.random.key(2, impl='rbg')}
    logits, state = model.apply(variables, x, train=True, rngs=rngs, mutable=['batch_stats'])
    return logits, state.get('batch_stats', {})


@pytest.mark.parametrize('family,knob', [
    ('ResNet', 'dropout_rate'), ('ResNet', 'drop_path_rate'), ('ResNet', 'bn_group_size'),
    ('ResNet', 'bn_epsilon'), ('ResNet', 'bn_momentum'), ('FractalNet', 'drop_path_rate')])
def test_each_knob_changes_the_forward_pass(family, knob):
    """The layer settings above reach the arithmetic: with the same weights and random streams,
    the knob changes train-mode logits (dropout, drop path, BN groups), eval-mode logits (BN
    epsilon) or the running statistics a training step leaves (BN momentum)."""
    _, size, _, _ = FAMILIES[family]
    base, changed = tiny(family), tiny(family, **{knob: VALUES[knob]})
    x = jax.random.normal(jax.random.key(0), (4, size, size, 3))
    variables = random_variables(base, x)
    train = knob != 'bn_epsilon'
    logits, stats = _apply(base, variables, x, train)
    np.testing.assert_array_equal(logits, _apply(base, variables, x, train)[0])  # Same streams.
    new_logits, new_stats = _apply(changed, variables, x, train)
    if knob == 'bn_momentum':
        np.testing.assert_array_equal(new_logits, logits)  # Momentum only moves the averages.
        for old, new in zip(jax.tree.leaves(stats), jax.tree.leaves(new_stats), strict=True):
            assert not np.allclose(old, new)
    else:
        assert not np.allclose(new_logits, logits)


@pytest.mark.parametrize('family', sorted(f for f, spec in FAMILIES.items()
                                          if SCALING_KNOBS[0] in spec[3]))
@pytest.mark.parametrize('knob', SCALING_KNOBS)
def test_multipliers_grow_the_network(family, knob):
    name, size, overrides, _ = FAMILIES[family]
    x = jnp.zeros((1, size, size, 3))

    def count(**scaled):
        model = create_model(name, num_classes=5, **{**overrides, **scaled})
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
        return sum(leaf.size for leaf in jax.tree.leaves(shapes['params']))

    base = overrides.get(knob, 1.0)
    assert count(**{knob: 2 * base}) > count(**{knob: base})


def test_an_unknown_knob_is_one_typeerror_naming_the_fields():
    with pytest.raises(TypeError) as error:
        create_model('lenet5', bn_momentum=0.9)
    message = str(error.value)
    assert message.startswith("model 'lenet5': ") and '\n' not in message
    assert 'valid fields: ' in message and 'activation' in message
