"""The classic families (issue 3): exact parameter counts, forward passes, aux heads, drop-path.

Parameter counts are those of the `params` collection of a model initialised for training (aux
heads included), compared exactly with torchvision / Keras figures (../shared/reference/params.md)
or with a count derived here layer by layer from the paper's table. Forward passes use small
inputs, weights drawn with numpy (no init compile) and eager op-by-op execution: no full-size VGG.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import models
from jaxconv.models import fractalnet
from jaxconv.train import steps

RNG_NAMES = ('params', 'dropout', 'drop_path')


def abstract_variables(model: nn.Module, resolution: int, channels: int = 3) -> dict:
    rngs = {name: jax.random.key(0) for name in RNG_NAMES}
    image = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(rngs, x, train=True), image)


def traced_init(model: nn.Module, resolution: int, batch: int = 2) -> tuple:
    """Abstract (logits, variables) of a training-mode init: one trace, no compute."""
    rngs = {name: jax.random.key(0) for name in RNG_NAMES}
    image = jax.ShapeDtypeStruct((batch, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), image)


def param_count(model: nn.Module, resolution: int) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_variables(model, resolution)
                                                             ['params']))


def numpy_variables(abstract: dict, seed: int = 0) -> dict:
    """Concrete variables without compiling initialisers: He-scaled kernels, identity BatchNorm.

    Kernels tile one block of normal draws (from a random offset each) rather than draw all of
    VGG's 140M afresh: plenty for finiteness and dropout checks, and it costs no time.
    """
    rng = np.random.default_rng(seed)
    block = rng.standard_normal(1 << 20, np.float32)

    def make(path, leaf):
        name = path[-1].key
        if name == 'kernel':
            std = np.float32(math.sqrt(2.0 / math.prod(leaf.shape[:-1])))
            return np.resize(np.roll(block, int(rng.integers(block.size))), leaf.shape) * std
        return np.full(leaf.shape, 1.0 if name in ('scale', 'var') else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(make, abstract)


# --- Layer-by-layer counts ---------------------------------------------------------------------

def conv(k: int, cin: int, cout: int, groups: int = 1, bias: bool = True) -> int:
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def fc(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


# AlexNet, paper Sec. 3.5 / Fig. 2 at 227x227: CONV2, CONV4, CONV5 split into two towers.
ALEXNET = (conv(11, 3, 96) + conv(5, 96, 256, 2) + conv(3, 256, 384) + conv(3, 384, 384, 2)
           + conv(3, 384, 256, 2) + fc(6 * 6 * 256, 4096) + fc(4096, 4096) + fc(4096, 1000))
ALEXNET_ONE_TOWER = (conv(11, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384)
                     + conv(3, 384, 256) + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000))
# ZFNet, Fig. 3 with Table 2 (b)'s layers 3-5 (512, 1024, 512): 6x6x512 into FC6.
ZFNET = (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 512) + conv(3, 512, 1024)
         + conv(3, 1024, 512) + fc(6 * 6 * 512, 4096) + fc(4096, 4096) + fc(4096, 1000))
# VGG C (Table 1) is B (torchvision vgg13, 133,047,848) plus conv1-256 and two conv1-512.
VGG13 = 133_047_848
VGG16_C = VGG13 + conv(1, 256, 256) + 2 * conv(1, 512, 512)
# torchvision's *_bn add BatchNorm scale + shift on every conv's channels.
VGG_BN_CHANNELS = {'vgg11': 64 + 128 + 2 * 256 + 4 * 512, 'vgg13': 2 * 64 + 2 * 128 + 2 * 256
                   + 4 * 512, 'vgg16': 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512,
                   'vgg19': 2 * 64 + 2 * 128 + 4 * 256 + 8 * 512}
# MiniVGG (course table) at 32x32x3, 10 classes: BatchNorm has a scale and a shift per channel.
MINIVGG = (conv(3, 3, 32) + 64 + conv(3, 32, 32) + 64 + conv(3, 32, 64) + 128
           + conv(3, 64, 64) + 128 + fc(8 * 8 * 64, 512) + 1024 + fc(512, 10))
# NiN CIFAR-10 (Sec. 4.2, the authors' released widths), 10 classes.
NIN = (conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96) + conv(5, 96, 192)
       + 2 * conv(1, 192, 192) + conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10))


def fractal_count(filters=(64, 128, 256, 512, 512), columns=3, classes=10) -> int:
    """Sec. 2 Eq. 1-2 with Sec. 4's widths and the authors' generator (gustavla/fractalnet): each
    block has 2**C - 1 biased 3x3 convs, C of them reading the block input; the BN has no learned
    parameters (Caffe BatchNorm without Scale); one FC on the 1x1x512 output."""
    total, cin = 0, 3
    for cout in filters:
        units = 2 ** columns - 1
        total += columns * conv(3, cin, cout) + (units - columns) * conv(3, cout, cout)
        cin = cout
    return total + fc(filters[-1], classes)


def mobilenet_v1_count(alpha: float, classes: int = 1000) -> int:
    """Table 1 with Keras' int(alpha * c) widths; BN scale + shift per channel; no conv bias."""
    widths = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    cin = int(32 * alpha)
    total = conv(3, 3, cin, bias=False) + 2 * cin
    for width in widths:
        cout = int(width * alpha)
        total += 9 * cin + 2 * cin + conv(1, cin, cout, bias=False) + 2 * cout
        cin = cout
    return total + fc(cin, classes)


# GoogLeNet as in the paper (biased convs, no BN, 5x5 kernels): Table 1 plus the two aux heads.
def googlenet_paper_count(classes: int = 1000) -> int:
    table = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64),
             (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
             (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
             (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128),
             (832, 384, 192, 384, 48, 128, 128)]
    total = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192) + fc(1024, classes)
    for cin, c1, r3, c3, r5, c5, proj in table:
        total += (conv(1, cin, c1) + conv(1, cin, r3) + conv(3, r3, c3) + conv(1, cin, r5)
                  + conv(5, r5, c5) + conv(1, cin, proj))
    for cin in (512, 528):  # Aux heads: 1x1 conv 128 on 4x4, FC 1024, FC classes.
        total += conv(1, cin, 128) + fc(4 * 4 * 128, 1024) + fc(1024, classes)
    return total


PARAM_COUNTS = [  # (name, resolution, num_classes, expected, where the figure comes from)
    ('alexnet', 227, 1000, 60_965_224, 'paper, two towers'),
    ('alexnet_tv', 224, 1000, 61_100_840, 'torchvision alexnet'),
    ('zfnet', 224, 1000, ZFNET, 'derived above'),
    ('vgg11', 224, 1000, 132_863_336, 'torchvision'),
    ('vgg11_lrn', 224, 1000, 132_863_336, 'LRN has no parameters: = vgg11'),
    ('vgg13', 224, 1000, VGG13, 'torchvision'),
    ('vgg16_c', 224, 1000, VGG16_C, 'derived above'),
    ('vgg16', 224, 1000, 138_357_544, 'torchvision'),
    ('vgg19', 224, 1000, 143_667_240, 'torchvision'),
    ('vgg11_bn', 224, 1000, 132_868_840, 'torchvision'),
    ('vgg13_bn', 224, 1000, 133_053_736, 'torchvision'),
    ('vgg16_bn', 224, 1000, 138_365_992, 'torchvision'),
    ('vgg19_bn', 224, 1000, 143_678_248, 'torchvision'),
    ('minivgg', 32, 10, MINIVGG, 'derived above'),
    ('nin_cifar10', 32, 10, NIN, 'derived above'),
    ('googlenet', 224, 1000, 13_004_888, 'torchvision, aux_logits=True'),
    ('inception_v3', 299, 1000, 27_161_264, 'torchvision, aux_logits=True'),
    ('squeezenet1_0', 224, 1000, 1_248_424, 'torchvision'),
    ('squeezenet1_1', 224, 1000, 1_235_496, 'torchvision'),
    ('fractalnet20', 32, 10, fractal_count(), 'derived above'),
    ('mobilenet_v1', 224, 1000, 4_231_976, 'Keras MobileNet trainable'),
    ('mobilenet_v2', 224, 1000, 3_504_872, 'torchvision'),
]


def test_derived_counts_agree_with_the_published_ones():
    assert ALEXNET == 60_965_224  # The figure the issue quotes for the two-tower paper network.
    assert ALEXNET_ONE_TOWER == 62_378_344
    for name, channels in VGG_BN_CHANNELS.items():
        plain = {'vgg11': 132_863_336, 'vgg13': VGG13, 'vgg16': 138_357_544,
                 'vgg19': 143_667_240}[name]
        bn = {'vgg11': 132_868_840, 'vgg13': 133_053_736, 'vgg16': 138_365_992,
              'vgg19': 143_678_248}[name]
        assert plain + 2 * channels == bn
    assert mobilenet_v1_count(1.0) == 4_231_976  # Keras trainable count.
    assert VGG16_C == 133_638_952 and ZFNET == 107_627_624 and MINIVGG == 2_169_770
    assert NIN == 966_986 and fractal_count() == 33_714_314


@pytest.mark.parametrize('name,resolution,num_classes,expected,source', PARAM_COUNTS,
                         ids=[row[0] for row in PARAM_COUNTS])
def test_param_count(name, resolution, num_classes, expected, source):
    del source  # Shown in the table above for the reader.
    model = models.create_model(name, num_classes=num_classes)
    assert param_count(model, resolution) == expected


@pytest.mark.parametrize('name,overrides,resolution,expected', [
    ('alexnet', {'groups': 1}, 227, ALEXNET_ONE_TOWER),
    ('googlenet', {'aux_logits': False}, 224, 6_624_904),  # torchvision without aux heads.
    ('googlenet_paper', {}, 224, googlenet_paper_count()),
    ('inception_v3', {'aux_logits': False}, 299, 23_834_568),  # torchvision / timm.
    ('fractalnet20', {'num_columns': 4}, 32, fractal_count(columns=4)),  # 40 layers deep.
    ('squeezenet1_0', {'bypass': True}, 224, 1_248_424),  # Sec. 6's simple bypass is free.
    # torchvision's adaptive pools: FC6 reads 7x7x512 / 6x6x256 at any input size.
    ('vgg16', {}, 96, 138_357_544), ('vgg16', {}, 320, 138_357_544),
    ('alexnet_tv', {}, 159, 61_100_840), ('alexnet_tv', {}, 320, 61_100_840),
    # The paper's fixed-size head at 256: an 8x8x512 map, 15 x 512 more FC6 inputs of 4096.
    ('vgg16', {'adaptive_pool_size': None}, 256, 138_357_544 + 15 * 512 * 4096),
])
def test_param_count_of_options(name, overrides, resolution, expected):
    model = models.create_model(name, num_classes=1000 if name != 'fractalnet20' else 10,
                                **overrides)
    assert param_count(model, resolution) == expected


# --- Forward passes at each network's smallest (or a small) input ------------------------------

# At these sizes the last map of VGG and AlexNet is 1x1: the paper's fixed-size head
# (adaptive_pool_size=None) keeps FC6 at 512 / 256 inputs, where the default adaptive pool would
# feed it 25,088 / 9,216 copies (the parity tests run that head at sizes where it pools).
FIXED_HEAD = {'adaptive_pool_size': None}
FORWARD = [  # (name, resolution, overrides)
    ('alexnet', 67, FIXED_HEAD), ('zfnet', 47, FIXED_HEAD), ('alexnet_tv', 63, FIXED_HEAD),
    ('vgg11', 32, FIXED_HEAD), ('vgg11_lrn', 32, FIXED_HEAD), ('vgg13', 32, FIXED_HEAD),
    ('vgg16_c', 32, FIXED_HEAD), ('vgg16', 32, FIXED_HEAD), ('vgg19', 32, FIXED_HEAD),
    ('vgg11_bn', 32, FIXED_HEAD), ('vgg13_bn', 32, FIXED_HEAD), ('vgg16_bn', 32, FIXED_HEAD),
    ('vgg19_bn', 32, FIXED_HEAD), ('minivgg', 32, {}), ('nin_cifar10', 32, {}),
    ('googlenet', 79, {}), ('inception_v3', 75, {'aux_logits': False}),
    ('squeezenet1_0', 21, {}), ('squeezenet1_1', 17, {}), ('fractalnet20', 32, {}),
    ('mobilenet_v1', 32, {'dropout_rate': 0.2}),  # Keras' 1e-3 would rarely change anything.
    ('mobilenet_v2', 32, {}),
]


# On CPU, compiling dominates. Plain stacks run op by op, and the VGG/AlexNet variants then share
# most compiled ops; the deep multi-branch graphs compile once each, with XLA's cheap codegen.
JITTED = {'googlenet', 'inception_v3', 'fractalnet20', 'mobilenet_v1', 'mobilenet_v2'}


@functools.cache
def compiled(name: str, resolution: int, overrides: tuple = ()) -> tuple:
    """The model, numpy-drawn variables, and its train and eval forward passes."""
    model = models.create_model(name, num_classes=10, **dict(overrides))
    variables = numpy_variables(abstract_variables(model, resolution))

    def train(variables, x, seed):
        # 'rbg' keys: dropout masks from XLA's RngBitGenerator compile far faster than threefry.
        rngs = {'dropout': jax.random.key(seed, impl='rbg'),
                'drop_path': jax.random.key(seed + 100, impl='rbg')}
        return model.apply(variables, x, train=True, rngs=rngs,
                           mutable=['batch_stats', 'intermediates'])

    def evaluate(variables, x):
        return model.apply(variables, x, train=False)

    if name in JITTED:
        jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})
        return model, variables, jit(train), jit(evaluate)
    return model, variables, train, evaluate


@pytest.mark.parametrize('name,resolution,overrides', FORWARD, ids=[row[0] for row in FORWARD])
def test_forward(name, resolution, overrides):
    _, variables, train, evaluate = compiled(name, resolution, tuple(overrides.items()))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, resolution, resolution, 3),
                                                               np.float32))
    eval1, eval2 = evaluate(variables, x), evaluate(variables, x)
    train1, train2 = train(variables, x, 0)[0], train(variables, x, 1)[0]
    for logits in (eval1, train1, train2):
        assert logits.shape == (2, 10)
        assert bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_array_equal(eval1, eval2)  # Eval mode is deterministic.
    assert not np.allclose(train1, train2)  # Dropout / drop-path draw from the rngs.


@pytest.mark.parametrize('name,train,min_size', [
    ('alexnet', False, 67), ('zfnet', False, 47), ('alexnet_tv', False, 63), ('vgg16', False, 32),
    ('minivgg', False, 4), ('nin_cifar10', False, 4), ('googlenet', False, 15),
    ('googlenet', True, 15),  # torchvision's min_size: the aux heads pool adaptively.
    ('googlenet_paper', False, 31), ('googlenet_paper', True, 79),  # 5x5/3 aux pool.
    ('inception_v3', False, 75), ('inception_v3', True, 299),
    ('squeezenet1_0', False, 21), ('squeezenet1_1', False, 17), ('fractalnet20', False, 32),
    ('mobilenet_v1', False, 32), ('mobilenet_v2', False, 32),
])
def test_too_small_input_fails_in_one_line_naming_the_minimum(name, train, min_size):
    model = models.create_model(name, num_classes=10)
    rngs = {k: jax.random.key(0) for k in RNG_NAMES}
    small = jax.ShapeDtypeStruct((1, min_size - 1, min_size - 1, 3), jnp.float32)
    with pytest.raises(ValueError, match=f'at least {min_size}x{min_size} pixels') as error:
        jax.eval_shape(lambda x: model.init(rngs, x, train=train), small)
    assert '\n' not in str(error.value)
    if name in ('minivgg', 'nin_cifar10', 'googlenet', 'googlenet_paper'):  # Others: above.
        fits = jax.ShapeDtypeStruct((1, min_size, min_size, 3), jnp.float32)
        jax.eval_shape(lambda x: model.init(rngs, x, train=train), fits)


# --- Auxiliary heads -----------------------------------------------------------------------------

def test_googlenet_sows_two_aux_logits_and_the_loss_weights_them():
    model, variables, train, _ = compiled('googlenet', 79, ())
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 79, 79, 3), np.float32))
    labels = jnp.array([3, 7])
    logits, state = train(variables, x, 0)
    aux = steps.aux_logits(state['intermediates'])
    assert len(aux) == 2 and all(a.shape == (2, 10) for a in aux)

    def ce(z):  # Mean softmax cross-entropy, by hand.
        z = np.asarray(z, np.float64)
        log_p = z - z.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        return -log_p[np.arange(2), np.asarray(labels)].mean()

    loss = steps.classification_loss(logits, state['intermediates'], labels, label_smoothing=0.0,
                                     aux_loss_weight=0.3)
    np.testing.assert_allclose(loss, ce(logits) + 0.3 * (ce(aux[0]) + ce(aux[1])), rtol=1e-5)
    _, eval_state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, mutable=['intermediates']), variables, x)
    assert not steps.aux_logits(eval_state.get('intermediates', {}))  # Training only.


def test_inception_v3_sows_one_aux_logits_at_299():
    model = models.create_model('inception_v3', num_classes=10)
    rngs = {name: jax.random.key(0) for name in RNG_NAMES}
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
    # init runs a training forward pass; mutable=True keeps what it sowed (init drops it).
    logits, variables = jax.eval_shape(
        lambda x: model.init_with_output(rngs, x, train=True, mutable=True), x)
    aux = steps.aux_logits(variables['intermediates'])
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10)]


# --- MobileNet multipliers ---------------------------------------------------------------------

MULTIPLIERS = [(0.25, 128, 0.5e6), (0.5, 160, 1.3e6), (0.75, 192, 2.6e6), (1.0, 224, 4.2e6)]


@pytest.mark.parametrize('alpha,resolution,paper_params', MULTIPLIERS)
def test_mobilenet_v1_width_and_resolution_multipliers(alpha, resolution, paper_params):
    logits, variables = traced_init(models.create_model('mobilenet_v1', width_multiplier=alpha),
                                    resolution)
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
    assert count == mobilenet_v1_count(alpha)
    assert round(count / 1e6, 1) == pytest.approx(paper_params / 1e6, abs=0.051)  # Table 6.
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize('alpha,resolution,stem', [(0.35, 128, 16), (0.5, 160, 16),
                                                  (0.75, 192, 24), (1.0, 224, 32)])
def test_mobilenet_v2_width_multiplier_rounds_to_multiples_of_8(alpha, resolution, stem):
    logits, variables = traced_init(models.create_model('mobilenet_v2', width_multiplier=alpha),
                                    resolution)
    params = variables['params']
    widths = [leaf.shape[-1] for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
              if path[-1].key == 'kernel' and len(leaf.shape) == 4]
    assert all(w % 8 == 0 for w in widths)
    # 32 * 0.35 = 11.2 rounds to 8, more than 10% short, so up to 16; the last conv stays 1280.
    assert params['features_0']['conv']['kernel'].shape[-1] == stem
    assert params['features_18']['conv']['kernel'].shape[-1] == 1280
    assert logits.shape == (2, 1000)


# --- FractalNet drop-path ----------------------------------------------------------------------

def test_join_is_the_mean_and_respects_the_mask():
    a, b, c = jnp.full((1, 2), 1.0), jnp.full((1, 2), 2.0), jnp.full((1, 2), 6.0)
    np.testing.assert_allclose(fractalnet.join([a, b, c]), jnp.full((1, 2), 3.0))
    np.testing.assert_allclose(fractalnet.join([a, b, c], jnp.array([True, False, True])),
                               jnp.full((1, 2), 3.5))


def test_local_drop_path_never_drops_every_input():
    keys = jax.random.split(jax.random.key(0), 500)
    columns = [0, 1, 2, 3]

    @jax.jit
    def masks(rate):
        return jax.vmap(lambda k: fractalnet.drop_path_keep(
            k, columns, rate, jnp.array(False), jnp.array(0)))(keys)

    kept = masks(1.0).sum(-1)  # Every input drawn for dropping: exactly one is rescued.
    assert bool(jnp.all(kept == 1))
    kept = masks(0.5).sum(-1)
    assert bool(jnp.all(kept >= 1)) and bool(jnp.any(kept < 4)) and bool(jnp.any(kept == 4))
    assert bool(jnp.all(masks(0.0)))


def test_global_drop_path_keeps_the_chosen_column_only():
    keep = fractalnet.drop_path_keep(jax.random.key(0), [1, 2], 0.15, jnp.array(True),
                                     jnp.array(2))
    np.testing.assert_array_equal(keep, [False, True])
    keep = fractalnet.drop_path_keep(jax.random.key(0), [1, 2], 0.15, jnp.array(True),
                                     jnp.array(0))
    np.testing.assert_array_equal(keep, [True, True])  # Column 0 never reaches this join.


def test_global_drop_path_runs_exactly_one_column_of_the_network():
    small = dict(num_classes=5, filters=(8,), block_dropout_rates=(0.0,))  # One block, C = 3.
    model = models.create_model('fractalnet20', global_drop_fraction=1.0, **small)
    variables = numpy_variables(abstract_variables(model, 2))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 2, 2, 3), np.float32))

    def run(m, **kwargs):
        return m.apply(variables, x, train=True, mutable=['batch_stats'], **kwargs)[0]

    columns = [run(models.create_model('fractalnet20', column=c, **small)) for c in (1, 2, 3)]
    chosen = set()
    for seed in range(6):
        out = run(model, rngs={'drop_path': jax.random.key(seed)})
        matches = [c for c, col in enumerate(columns, 1) if np.allclose(out, col, atol=1e-5)]
        assert len(matches) == 1
        chosen.update(matches)
    assert len(chosen) > 1
    # At test time every column contributes: the full network is none of its columns.
    full = model.apply(variables, x)
    np.testing.assert_array_equal(full, model.apply(variables, x))
    for c in (1, 2, 3):
        single = models.create_model('fractalnet20', column=c, **small).apply(variables, x)
        assert not np.allclose(full, single)
