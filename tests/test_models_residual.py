"""Residual and scaled families: exact parameter counts, MACs, EfficientNet block plans, stochastic
depth, small forward passes and build-time errors. Everything big runs under jax.eval_shape only.

XLA:CPU compiles threefry random numbers slowly (about a second per call at jit time), so the
forward tests fill parameters with NumPy instead of compiling `model.init`, and the train-mode
tests use 'rbg' keys for the dropout and drop-path streams.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.models import create_model, densenet, efficientnet, preact_resnet, resnet
from jaxconv.models.flops import count_macs
from jaxconv.models.layers import DropPath, drop_path_rates

RNG_NAMES = ('params', 'dropout', 'drop_path')


def rngs(seed: int = 0, impl: str | None = None) -> dict[str, jax.Array]:
    return {name: jax.random.key(seed + i, impl=impl) for i, name in enumerate(RNG_NAMES)}


def numpy_variables(model, x: jax.Array) -> dict:
    """Variables of the right shapes without compiling the initialisers: He-normal kernels,
    unit BN scales and running variances, zero biases and means."""
    shapes = jax.eval_shape(lambda: model.init(rngs(), x, train=False))
    gen = np.random.default_rng(0)

    def fill(path, leaf):
        if path[-1].key == 'kernel':
            std = math.sqrt(2 / math.prod(leaf.shape[:-1]))
            return jnp.asarray(gen.normal(0, std, leaf.shape), leaf.dtype)
        return jnp.full(leaf.shape, path[-1].key in ('scale', 'var'), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.cache
def abstract_params(name: str, num_classes: int) -> dict:
    """The params tree of `name` as shapes only (resolution does not change the count)."""
    model = create_model(name, num_classes=num_classes)
    size = 32  # The smallest input every model here accepts.
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: model.init(rngs(), x, train=True))['params']


def num_params(tree) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def bn_params(tree) -> int:
    """BatchNorm scale + bias: every `scale` leaf comes with a `bias` of the same size."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return 2 * sum(leaf.size for path, leaf in leaves if path[-1].key == 'scale')


# Closed forms of the CIFAR nets, from the papers' layer descriptions (convs have no bias).
def conv(cin: int, cout: int, k: int = 1, groups: int = 1) -> int:
    return cin // groups * cout * k * k


def bn(c: int) -> int:
    return 2 * c


def head(c: int, classes: int = 10) -> int:
    return c * classes + classes


def cifar_resnet(n: int) -> int:
    """He et al. 2015 Sec. 4.2: 3x3 stem-BN, 3 x n basic blocks of 16/32/64, option A shortcuts."""
    total, cin = conv(3, 16, 3) + bn(16), 16
    for w in (16, 32, 64):
        for _ in range(n):
            total, cin = total + conv(cin, w, 3) + bn(w) + conv(w, w, 3) + bn(w), w
    return total + head(64)


def preact_cifar(n: int, widths: tuple[int, ...], bottleneck: bool) -> int:
    """He et al. 2016 / Zagoruyko & Komodakis 2016: bare 3x3 stem, BN-ReLU-conv blocks with a 1x1
    projection when the width changes, final BN."""
    total, cin = conv(3, 16, 3), 16
    for w in widths:
        out = 4 * w if bottleneck else w
        for _ in range(n):
            if bottleneck:
                branch = bn(cin) + conv(cin, w) + bn(w) + conv(w, w, 3) + bn(w) + conv(w, out)
            else:
                branch = bn(cin) + conv(cin, w, 3) + bn(w) + conv(w, w, 3)
            total, cin = total + branch + (conv(cin, out) if cin != out else 0), out
    return total + bn(cin) + head(cin)


def cifar_resnext(groups: int) -> int:
    """Xie et al. 2017 Sec. 5.3: 3x3 stem of 64, 3 x 3 bottlenecks of grouped width g x 64 x 2^s."""
    total, cin = conv(3, 64, 3) + bn(64), 64
    for p in (64, 128, 256):
        w = groups * p
        for _ in range(3):
            branch = conv(cin, w) + bn(w) + conv(w, w, 3, groups) + bn(w)
            branch += conv(w, 4 * p) + bn(4 * p)
            total = total + branch + (conv(cin, 4 * p) + bn(4 * p) if cin != 4 * p else 0)
            cin = 4 * p
    return total + head(cin)


def densenet_bc(depth: int, k: int) -> int:
    """Huang et al. 2017 DenseNet-BC: 3x3 stem of 2k, 3 blocks of (L-4)/6 bottleneck layers, 0.5."""
    total, c = conv(3, 2 * k, 3), 2 * k
    for block in range(3):
        for _ in range((depth - 4) // 6):
            total, c = total + bn(c) + conv(c, 4 * k) + bn(4 * k) + conv(4 * k, k, 3), c + k
        if block < 2:
            total, c = total + bn(c) + conv(c, c // 2), c // 2
    return total + bn(c) + head(c)


def se_params(channels: list[int], ratio: float) -> int:
    """SE blocks on each listed output width: fc1 and fc2 with biases, width/16 rounded to 8s."""
    return sum(2 * c * max(8, int(c * ratio + 4) // 8 * 8) + max(8, int(c * ratio + 4) // 8 * 8) + c
               for c in channels)


def bottleneck_outputs(depths: tuple[int, ...]) -> list[int]:
    return [256 * 2 ** i for i, n in enumerate(depths) for _ in range(n)]


DEEP_STEM_DELTA = 19_232  # timm resnet50d - resnet50: 3x3 stem (32, 32, 64) minus the 7x7 conv.

# name: (exact count, num_classes). Figures are ../shared/reference/params.md (torchvision 0.29.1 /
# timm 1.0.31) unless marked; CIFAR nets come from the closed forms above, with the papers' rounded
# figures next to them.
EXPECTED = {
    'resnet18': (11_689_512, 1000),
    'resnet34': (21_797_672, 1000),
    'resnet50': (25_557_032, 1000),
    'resnet101': (44_549_160, 1000),
    'resnet152': (60_192_808, 1000),
    'resnet200': (64_673_832, 1000),  # timm.
    'resnet50d': (25_576_264, 1000),  # timm.
    'seresnet50': (28_088_024, 1000),  # timm.
    'wide_resnet50_2': (68_883_240, 1000),
    'wide_resnet101_2': (126_886_696, 1000),
    'resnext50_32x4d': (25_028_904, 1000),
    'resnext101_32x8d': (88_791_336, 1000),
    'densenet121': (7_978_856, 1000),
    'densenet169': (14_149_480, 1000),
    'densenet201': (20_013_928, 1000),
    'densenet161': (28_681_000, 1000),  # torchvision DenseNet161_Weights meta (not in params.md).
    'resnet_rs50': (35_691_912, 1000),  # timm resnetrs*.
    'resnet_rs101': (63_618_696, 1000),
    'resnet_rs152': (86_621_576, 1000),
    'resnet_rs200': (93_209_992, 1000),
    'resnet_rs270': (129_861_448, 1000),
    'resnet_rs350': (163_956_168, 1000),
    'resnet_rs420': (191_891_656, 1000),
    'efficientnet_b0': (5_288_548, 1000),  # timm tf_efficientnet_b* = torchvision.
    'efficientnet_b1': (7_794_184, 1000),
    'efficientnet_b2': (9_109_994, 1000),
    'efficientnet_b3': (12_233_232, 1000),
    'efficientnet_b4': (19_341_616, 1000),
    'efficientnet_b5': (30_389_784, 1000),
    'efficientnet_b6': (43_040_704, 1000),
    'efficientnet_b7': (66_347_960, 1000),
    # ResNet-D only changes the stem (avg-down adds no parameters).
    **{f'resnet{d}d': (v1 + DEEP_STEM_DELTA, 1000) for d, v1 in (
        (18, 11_689_512), (34, 21_797_672), (101, 44_549_160), (152, 60_192_808),
        (200, 64_673_832))},
    # SE (r = 16) on every bottleneck output; seresnext50_32x4d is timm's 27,559,896.
    'seresnet101': (44_549_160 + se_params(bottleneck_outputs((3, 4, 23, 3)), 1 / 16), 1000),
    'seresnet152': (60_192_808 + se_params(bottleneck_outputs((3, 8, 36, 3)), 1 / 16), 1000),
    'seresnext50_32x4d': (27_559_896, 1000),
    # CIFAR, 10 classes. He et al. 2015 Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
    **{f'resnet{6 * n + 2}': (cifar_resnet(n), 10) for n in (3, 5, 7, 9, 18)},
    **{f'preact_resnet{6 * n + 2}': (preact_cifar(n, (16, 32, 64), False), 10)
       for n in (3, 5, 7, 9, 18)},
    # He et al. 2016 Table 3: ResNet-164 1.7M.
    'preact_resnet164': (preact_cifar(18, (16, 32, 64), True), 10),
    # Zagoruyko & Komodakis 2016 Table 1-4: WRN-28-10 36.5M, WRN-40-4 8.9M, WRN-16-8 11.0M.
    **{f'wrn{d}_{k}': (preact_cifar((d - 4) // 6, (16 * k, 32 * k, 64 * k), False), 10)
       for d, k in ((16, 4), (16, 8), (28, 10), (40, 2), (40, 4))},
    # Xie et al. 2017 Table 7: 34.4M and 68.1M.
    'resnext29_8x64d': (cifar_resnext(8), 10),
    'resnext29_16x64d': (cifar_resnext(16), 10),
    # Huang et al. 2017 Table 2: 0.8M, 25.6M.
    'densenet_bc100_k12': (densenet_bc(100, 12), 10),
    'densenet_bc190_k40': (densenet_bc(190, 40), 10),
}
# The papers' rounded figures, to check that the closed forms are the published nets.
PAPER_MILLIONS = {'resnet20': 0.27, 'resnet110': 1.7, 'preact_resnet164': 1.7, 'wrn28_10': 36.5,
                  'wrn40_4': 8.9, 'wrn16_8': 11.0, 'resnext29_8x64d': 34.4,
                  'resnext29_16x64d': 68.1, 'densenet_bc100_k12': 0.8, 'densenet_bc190_k40': 25.6}
PREACT_IMAGENET = [f'preact_resnet{d}' for d in resnet.IMAGENET_DEPTHS]


def family_names() -> list[str]:
    """Every name of these families but the tf_efficientnet_* aliases (tested below)."""
    return sorted([*resnet.VARIANTS, *preact_resnet.VARIANTS, *densenet.VARIANTS,
                   *(n for n in efficientnet.VARIANTS if not n.startswith('tf_'))])


def test_tf_efficientnet_names_are_the_same_networks():
    """timm's names of its TF ports (tf_efficientnet_b*, 5,288,548 ... parameters like
    efficientnet_b* in params.md) build exactly jaxconv's default, TF-layout EfficientNets."""
    aliases = [n for n in efficientnet.VARIANTS if n.startswith('tf_')]
    assert len(aliases) == 8
    for alias in aliases:
        name = alias.removeprefix('tf_')
        assert create_model(alias).clone(variant=name) == create_model(name)
        assert create_model(alias).padding == 'same' and create_model(alias).bn_epsilon == 1e-3


def test_every_name_has_a_reference():
    # keras_* variants: counted against the Keras Applications table (test_keras_applications).
    names = {name for name in family_names() if not name.startswith('keras_')}
    assert names == set(EXPECTED) | set(PREACT_IMAGENET)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_param_count_is_exact(name):
    count, num_classes = EXPECTED[name]
    assert num_params(abstract_params(name, num_classes)) == count
    if name in PAPER_MILLIONS:  # Rounded in the papers.
        assert count / 1e6 == pytest.approx(PAPER_MILLIONS[name], rel=0.05)


@pytest.mark.parametrize('name', PREACT_IMAGENET)
def test_preact_imagenet_count(name):
    """v2 has v1's convs and classifier; only the BatchNorms move (onto each block's input and
    after the last block, none in the stem or shortcuts). Keras ResNet50V2 (25,568,360 trainable)
    is preact_resnet50 plus 19,008 conv biases."""
    v2, v1 = abstract_params(name, 1000), abstract_params(name.removeprefix('preact_'), 1000)
    assert num_params(v2) - bn_params(v2) == num_params(v1) - bn_params(v1)
    bottleneck, depths = resnet.IMAGENET_DEPTHS[int(name.removeprefix('preact_resnet'))]
    expected_bn, cin = 0, 64
    for i, n in enumerate(depths):
        planes = 64 * 2 ** i
        for _ in range(n):
            expected_bn += bn(cin) + bn(planes) * (2 if bottleneck else 1)
            cin = planes * (4 if bottleneck else 1)
    assert bn_params(v2) == expected_bn + bn(cin)
    if name == 'preact_resnet50':
        assert num_params(v2) == 25_568_360 - 19_008


@pytest.mark.parametrize('name, resolution, macs', [
    ('resnet50', 224, 4_089_184_256),  # torchvision; "3.8 GFLOPs" in He et al. is stride-in-1x1.
    ('efficientnet_b0', 224, 385_814_752),  # Tan & Le 2019 Table 2: 0.39B.
    ('efficientnet_b7', 600, 37_745_884_192),  # Table 2: 37B.
])
def test_macs_match_published(name, resolution, macs):
    measured = count_macs(create_model(name), resolution)
    assert measured == macs  # The torch FlopCounter figure in params.md, to the multiply-add.
    published = {'resnet50': 4.1e9, 'efficientnet_b0': 0.39e9, 'efficientnet_b7': 37e9}[name]
    assert abs(measured / published - 1) < 0.03


def test_stride_in_1x1_is_the_original_resnet():
    """With the stride on the first 1x1 (He et al. 2015) ResNet-50 has Keras ResNet50's MACs
    (params.md: 3.858 G against torchvision's 4.089 G; Keras convs also carry biases)."""
    assert count_macs(create_model('resnet50', stride_in_1x1=True), 224) == 3_857_973_248


# timm tf_efficientnet_b0..b7 stage plans: `_gen_efficientnet`'s B0 arch_def ('ds_r1_k3_s1_e1_c16',
# 'ir_r2_k3_s2_e6_c24', ...) through `round_channels(multiplier, divisor=8)` and
# `_scale_stage_depth(depth_trunc='ceil')`; (stem, per-stage (repeats, channels), head).
TIMM_PLANS = {
    0: (32, ((1, 16), (2, 24), (2, 40), (3, 80), (3, 112), (4, 192), (1, 320)), 1280),
    1: (32, ((2, 16), (3, 24), (3, 40), (4, 80), (4, 112), (5, 192), (2, 320)), 1280),
    2: (32, ((2, 16), (3, 24), (3, 48), (4, 88), (4, 120), (5, 208), (2, 352)), 1408),
    3: (40, ((2, 24), (3, 32), (3, 48), (5, 96), (5, 136), (6, 232), (2, 384)), 1536),
    4: (48, ((2, 24), (4, 32), (4, 56), (6, 112), (6, 160), (8, 272), (2, 448)), 1792),
    5: (48, ((3, 24), (5, 40), (5, 64), (7, 128), (7, 176), (9, 304), (3, 512)), 2048),
    6: (56, ((3, 32), (6, 40), (6, 72), (8, 144), (8, 200), (11, 344), (3, 576)), 2304),
    7: (64, ((4, 32), (7, 48), (7, 80), (10, 160), (10, 224), (13, 384), (4, 640)), 2560),
}


@pytest.mark.parametrize('phi', sorted(TIMM_PLANS))
def test_efficientnet_blocks_match_timm(phi):
    stem, stages, head_width = create_model(f'efficientnet_b{phi}').plan()
    assert (stem, tuple((r, c) for r, _, _, _, c in stages), head_width) == TIMM_PLANS[phi]
    # The built model has exactly these blocks and widths.
    params = abstract_params(f'efficientnet_b{phi}', 1000)
    assert params['conv_stem']['kernel'].shape[-1] == stem
    assert params['conv_head']['kernel'].shape[-1] == head_width
    for i, (repeats, channels) in enumerate(TIMM_PLANS[phi][1]):
        blocks = [params[f'blocks{i}_{j}'] for j in range(repeats)]
        assert f'blocks{i}_{repeats}' not in params
        assert all(b['conv_pwl']['kernel'].shape[-1] == channels for b in blocks)


def test_efficientnet_formula_mode():
    """Eq. 3 at phi=1: width 1.1 and depth 1.2 give B2's channels and repeats, and the
    resolution is round(224 * 1.15) = 258 (the released B1 uses 1.0, 1.1, 240)."""
    model = create_model('efficientnet_b0', **efficientnet.compound_overrides(1))
    assert (model.width_multiplier, model.depth_multiplier) == pytest.approx((1.1, 1.2))
    assert model.default_image_size == 258
    assert model.plan() == create_model('efficientnet_b2').plan()
    custom = create_model('efficientnet_b0',
                          **efficientnet.compound_overrides(2, alpha=1.1, beta=1.2))
    assert (custom.depth_multiplier, custom.width_multiplier) == pytest.approx((1.21, 1.44))
    with pytest.raises(ValueError, match='phi=9'):
        efficientnet.compound_overrides(9, scaling='published')


# Stochastic depth.
def test_drop_path_rates_block_and_stage():
    depths = (3, 4, 6, 3)
    block = drop_path_rates(depths, 0.2, 'block')
    assert [len(s) for s in block] == list(depths)
    assert sum(block, []) == pytest.approx([0.2 * i / 15 for i in range(16)])
    stage = drop_path_rates(depths, 0.2, 'stage')  # TF ResNet-RS: rate * stage / 5, stages 2-5.
    assert sum(stage, []) == pytest.approx([0.08] * 3 + [0.12] * 4 + [0.16] * 6 + [0.2] * 3)
    assert drop_path_rates((1,), 0.3, 'block') == [[0.3]]
    with pytest.raises(ValueError, match='block, stage'):
        drop_path_rates(depths, 0.2, 'linear')


def test_drop_path_statistics():
    x = jnp.ones((20000, 2, 2, 3))
    layer = DropPath(0.3)
    y = layer.apply({}, x, deterministic=False, rngs={'drop_path': jax.random.key(1)})
    dropped = np.asarray(jnp.all(y == 0, axis=(1, 2, 3)))
    assert abs(dropped.mean() - 0.3) < 0.015  # ~5 sigma.
    np.testing.assert_allclose(np.asarray(y)[~dropped], 1 / 0.7, rtol=1e-6)  # Train-time scaling.
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)


def tiny(name: str, **overrides):
    return create_model(name, num_classes=5, **overrides)


TINY_RS = dict(stage_depths=(2, 1, 1, 1), width_multiplier=0.25, zero_init_last=False)


def drop_path_calls(model, x: jax.Array, variables: dict) -> list[tuple[float, jax.Array]]:
    """(rate, fraction of examples whose branch was dropped) of each DropPath in a train step."""
    seen = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, DropPath):
            dropped = jnp.all(out == 0, axis=(1, 2, 3)) & jnp.any(args[0] != 0, axis=(1, 2, 3))
            seen.append((context.module.rate, dropped.mean()))
        return out

    with nn.intercept_methods(record):
        model.apply(variables, x, train=True, rngs=rngs(1, 'rbg'), mutable=['batch_stats'])
    return seen


@pytest.mark.parametrize('rule', ['block', 'stage'])
def test_blocks_get_their_scheduled_rate(rule):
    model = tiny('resnet_rs50', drop_path_rate=0.5, drop_path_rule=rule, **TINY_RS)
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(rngs(), x))
    calls = []  # Filled while tracing: the rates are static Python floats.
    jax.eval_shape(lambda v: calls.extend(r for r, _ in drop_path_calls(model, x, v)), variables)
    expected = [r for r in sum(drop_path_rates((2, 1, 1, 1), 0.5, rule), []) if r > 0]
    assert calls == pytest.approx(expected)


def test_blocks_drop_their_rate_of_examples():
    """Over 512 examples each block's branch is dropped for a fraction near its linear-rule rate."""
    model = tiny('resnet_rs50', drop_path_rate=0.5, drop_path_rule='block', **TINY_RS)
    x = jax.random.normal(jax.random.key(0), (512, 32, 32, 3))
    variables = numpy_variables(model, x[:2])
    rates = [r for r in sum(drop_path_rates((2, 1, 1, 1), 0.5, 'block'), []) if r > 0]
    fractions = jax.jit(lambda v, x: [f for _, f in drop_path_calls(model, x, v)])(variables, x)
    assert len(fractions) == len(rates)
    for rate, fraction in zip(rates, fractions, strict=True):
        assert abs(float(fraction) - rate) < 4 * math.sqrt(rate * (1 - rate) / 512)


def test_drop_path_train_vs_eval():
    model = tiny('resnet_rs50', drop_path_rate=0.5, **TINY_RS)
    x = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))
    variables = numpy_variables(model, x)

    @functools.partial(jax.jit, static_argnames=('model', 'train'))
    def run(model, variables, x, keys, train):
        return model.apply(variables, x, train=train, rngs=keys, mutable=['batch_stats'])[0]

    train = [run(model, variables, x, rngs(s, 'rbg'), True) for s in (1, 2)]
    assert not np.allclose(train[0], train[1])
    evals = [run(model, variables, x, rngs(s, 'rbg'), False) for s in (1, 2)]
    np.testing.assert_array_equal(evals[0], evals[1])
    # With every rate at 0, training is deterministic too (BN batch statistics aside).
    plain = model.clone(drop_path_rate=0.0, dropout_rate=0.0)
    train = [run(plain, variables, x, rngs(s, 'rbg'), True) for s in (1, 2)]
    np.testing.assert_array_equal(train[0], train[1])


# Forward passes: the small nets as registered, the big families as tiny overrides.
FORWARD = [
    ('resnet20', 32, {}),
    ('preact_resnet20', 32, {}),
    ('resnet20', 32, dict(shortcut='conv', stage_depths=(1, 1, 1))),  # Option B.
    ('resnet_rs50', 33, dict(TINY_RS, drop_path_rate=0.2, dropout_rate=0.2)),  # Odd sizes.
    ('seresnext50_32x4d', 32, dict(stage_depths=(1, 1, 1, 1), width_multiplier=0.5)),
    ('preact_resnet50', 32, dict(stage_depths=(1, 1, 1, 1), width_multiplier=0.25, se_ratio=0.25)),
    ('wrn16_4', 32, dict(width_multiplier=0.25, block_dropout_rate=0.3)),
    ('densenet_bc100_k12', 32, dict(depth_multiplier=0.1)),
    ('efficientnet_b0', 35, dict(depth_multiplier=0.3, width_multiplier=0.25,
                                 padding='symmetric')),  # timm's native layout; TF's is default.
]


@pytest.mark.parametrize('name, size, overrides', FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_is_finite_and_deterministic(name, size, overrides):
    model = tiny(name, **overrides)
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    variables = numpy_variables(model, x)
    apply = jax.jit(functools.partial(model.apply, train=False))
    logits = apply(variables, x, rngs=rngs(1, 'rbg'))
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    np.testing.assert_array_equal(logits, apply(variables, x, rngs=rngs(2, 'rbg')))


def test_bfloat16_compute_keeps_float32_params():
    model = tiny('resnet20', dtype=jnp.bfloat16, stage_depths=(1,), stage_widths=(16,))
    x = jnp.ones((2, 32, 32, 3))
    variables = jax.jit(model.init)(rngs(0, 'rbg'), x)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {np.dtype('float32')}
    assert jax.jit(model.apply)(variables, x).dtype == jnp.bfloat16


@pytest.mark.parametrize('name, size, minimum', [
    ('resnet50', 31, 32), ('resnet_rs50', 16, 32), ('resnet20', 3, 4), ('preact_resnet18', 8, 32),
    ('wrn28_10', 2, 4), ('densenet121', 16, 32), ('efficientnet_b0', 24, 32)])
def test_too_small_input_fails_at_build_time(name, size, minimum):
    model = create_model(name)
    with pytest.raises(ValueError, match=f'^{name} needs inputs of at least {minimum}x{minimum} '):
        jax.eval_shape(lambda: model.init(rngs(), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize('name, field, value', [
    ('resnet50', 'stem', 'big'), ('resnet50', 'shortcut', 'zero'),
    ('resnet50', 'drop_path_rule', 'x'), ('resnet50', 'stem_pool', 'avg'),
    ('preact_resnet18', 'stem', 'deep'), ('densenet121', 'stem', 'deep')])
def test_unknown_options_name_the_valid_ones(name, field, value):
    model = create_model(name, **{field: value})
    with pytest.raises(ValueError, match='valid'):
        jax.eval_shape(lambda: model.init(rngs(), jnp.zeros((1, 64, 64, 3))))


def test_zero_init_last_bn():
    """The last BN scale of each residual branch starts at 0 (Goyal et al. 2017), as an option."""
    x = jnp.zeros((1, 32, 32, 3))
    zero, plain = (create_model('resnet18', stage_depths=(1,), stage_widths=(64,),
                                zero_init_last=z) for z in (True, False))
    params = jax.jit(lambda r: (zero.init(r, x), plain.init(r, x)))(rngs(0, 'rbg'))
    zero, plain = (p['params']['layer1_0'] for p in params)
    assert not zero['bn2']['scale'].any() and zero['bn1']['scale'].all()
    assert plain['bn2']['scale'].all()
