"""Blocks shared by several families; each is small and cites where it comes from."""

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ModuleDef = Any  # A module factory such as a functools.partial of nn.Conv (flax's alias).

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'relu6': nn.relu6,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'swish': nn.swish,  # a.k.a. SiLU; EfficientNet's activation.
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks an activation up by name, naming the valid ones on a miss."""
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}; valid: {", ".join(sorted(ACTIVATIONS))}')
    return ACTIVATIONS[name]


def pool2d(kind: str, x: jax.Array, window: int, stride: int, padding: str = 'VALID') -> jax.Array:
    """Max or average pooling over the H and W axes of an NHWC array."""
    if kind == 'max':
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
    if kind == 'avg':
        return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=padding)
    raise ValueError(f'unknown pooling {kind!r}; valid: avg, max')


def check_min_input(model_name: str, x: jax.Array, min_size: int) -> None:
    """Fails at build time, in one line, when the input is smaller than the strides allow."""
    height, width = x.shape[1:3]
    if min(height, width) < min_size:
        raise ValueError(f'{model_name} needs inputs of at least {min_size}x{min_size} pixels; '
                         f'got {height}x{width} (raise dataset.image_size)')


def window_output_size(n: int, window: int, stride: int, padding: int = 0,
                       ceil_mode: bool = False) -> int:
    """Output side of a conv or pooling window on an n-pixel side; below 1 when it does not fit.

    floor((n + 2 padding - window) / stride) + 1, or in ceil mode (Caffe, PyTorch `ceil_mode`)
    rounded up, minus one when the last window would start in the padding.
    """
    span = n + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def smallest_input(windows: Sequence[tuple[int, int, int, bool]], limit: int = 4096) -> int:
    """The smallest square side on which every (window, stride, padding, ceil_mode) step of a
    network's spatial path, applied in order, leaves at least one pixel."""
    for size in range(1, limit):
        n = size
        for window, stride, padding, ceil_mode in windows:
            n = window_output_size(n, window, stride, padding, ceil_mode)
            if n < 1:
                break
        else:
            return size
    raise ValueError('no input size fits these layers')


def pool2d_ceil(kind: str, x: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """Pooling with the output size rounded up, as Caffe and PyTorch's `ceil_mode=True` do.

    The Caffe-era reference models (NiN, GoogLeNet, SqueezeNet, ZFNet's sizes) use
    out = ceil((n + 2 * padding - window) / stride) + 1, minus one when the last window would start
    in the padding. The overhang on the bottom/right counts as -inf for max pooling and is left out
    of the average (so is `padding`: NiN's 'average_exc_pad', the only avg use here, has none).
    """
    pads = []
    for n in x.shape[1:3]:
        out = window_output_size(n, window, stride, padding, ceil_mode=True)
        if out < 1:
            raise ValueError(f'{window}x{window} pooling cannot run on a {n}-pixel map')
        pads.append((padding, (out - 1) * stride + window - n - padding))
    if kind == 'max':
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)
    if kind == 'avg':
        return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=pads,
                           count_include_pad=False)
    raise ValueError(f'unknown pooling {kind!r}; valid: avg, max')


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """PyTorch's `AdaptiveAvgPool2d((size, size))` on an NHWC array.

    Output cell i averages input rows floor(i n / size) to ceil((i + 1) n / size) - 1 (and the same
    for columns): windows that may overlap, and that repeat pixels when n < size. The torchvision
    classifiers of VGG (7x7), AlexNet (6x6) and GoogLeNet's aux heads (4x4) use it so that their
    FC fan-in does not depend on the input size. Bins are rectangles, so the pool is one averaging
    matrix per axis.
    """
    height, width = x.shape[1:3]
    if (height, width) == (size, size):
        return x

    def bins(n: int) -> np.ndarray:
        matrix = np.zeros((size, n), np.float32)
        for i in range(size):
            start, end = i * n // size, -(-(i + 1) * n // size)
            matrix[i, start:end] = 1.0 / (end - start)
        return matrix

    rows, cols = bins(height).astype(x.dtype), bins(width).astype(x.dtype)
    return jnp.einsum('ih,nhwc,jw->nijc', rows, x, cols)


def fc_classifier(x: jax.Array, hidden: Sequence[int], num_classes: int, names: Sequence[str],
                  dropout: ModuleDef, *, dropout_first: bool = False,
                  dtype: Any = jnp.float32) -> jax.Array:
    """AlexNet's classifier, which VGG took over: flatten, FC-ReLU layers of the `hidden` widths,
    an FC to the classes (Krizhevsky et al. 2012 Sec. 4.2, Simonyan & Zisserman 2015 Sec. 2.1).

    `dropout` (a bound nn.Dropout) acts on the input of every FC but the first, as in the papers
    ("the first two fully-connected layers" drop their outputs), or with `dropout_first` on every
    FC but the last, as torchvision's AlexNet does. `names`: one per FC layer.
    """
    x = x.reshape(x.shape[0], -1)
    widths = [*hidden, num_classes]
    for i, (width, name) in enumerate(zip(widths, names, strict=True)):
        if (i < len(hidden)) if dropout_first else (i > 0):
            x = dropout(x)
        x = nn.Dense(width, dtype=dtype, name=name)(x)
        if i < len(hidden):
            x = nn.relu(x)
    return x


PADDINGS = ('same', 'symmetric')


def conv_padding(kind: str, kernel: int) -> str | int:
    """How a kernel x kernel conv pads, by the convention of the framework whose weights it takes.

    'same': TF's "SAME" (TF, Keras and the timm `tf_` ports): a strided conv on an even side puts
    the extra pixel at the bottom/right. 'symmetric': PyTorch's `kernel // 2` on every side. The
    two agree for stride 1 and give the same output shapes, so only the values of strided convs
    differ; parameter counts never do.
    """
    if kind == 'same':
        return 'SAME'
    if kind == 'symmetric':
        return kernel // 2
    raise ValueError(f'unknown padding {kind!r}; valid: {", ".join(PADDINGS)}')


def conv7x7_stem(x: jax.Array, features: int, conv: ModuleDef, norm: ModuleDef | None = None,
                 act: Callable[[jax.Array], jax.Array] | None = None, *, pool: str = 'max',
                 names: tuple[str, str] = ('conv1', 'bn1')) -> jax.Array:
    """The ImageNet stem: 7x7/2 conv (padding 3) [-norm] [-activation], then 3x3/2 max pooling.

    He et al. 2015 Table 1 (conv1 and the first pool), shared by ResNet, ResNet v2 (no norm: its
    first block pre-activates), DenseNet and GoogLeNet. `pool`: 'max' pads 1 (torchvision's
    ResNet and DenseNet), 'max_ceil' is unpadded in ceil mode (Caffe's GoogLeNet), 'none' leaves
    the pooling to the caller (ResNet-RS's strided conv). Each gives 224 -> 112 -> 56. The module
    names (`names`: conv, norm) are the caller's, so weight layouts keep the reference's names.
    """
    conv_name, norm_name = names
    x = conv(features, (7, 7), 2, padding=3, name=conv_name)(x)
    if norm is not None:
        x = norm(name=norm_name)(x)
    if act is not None:
        x = act(x)
    if pool == 'max':
        return pool2d('max', x, window=3, stride=2, padding=((1, 1), (1, 1)))
    if pool == 'max_ceil':
        return pool2d_ceil('max', x, window=3, stride=2)
    if pool == 'none':
        return x
    raise ValueError(f'unknown stem pool {pool!r}; valid: max, max_ceil, none')


def local_response_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> jax.Array:
    """Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3).

    b_c = a_c / (k + alpha * sum of a_j^2 over the `size` channels j centred on c) ** beta, with
    the paper's k=2, n=5, alpha=1e-4, beta=0.75 (also VGG's A-LRN and GoogLeNet's). alpha scales
    the plain sum as in the paper and TF; Caffe and PyTorch divide it by `size` first. Computed in
    float32 whatever the compute dtype: the power of a small sum is fragile in bfloat16.
    """
    squares = jnp.square(x.astype(jnp.float32))
    half = size // 2
    sums = jax.lax.reduce_window(squares, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), (0, 0), (half, size - 1 - half)))
    return (x.astype(jnp.float32) / (k + alpha * sums) ** beta).astype(x.dtype)


# ---- Depthwise convolutions on CPU ---------------------------------------------------------

_DEPTHWISE_AS_SHIFTS = contextvars.ContextVar('depthwise_as_shifts', default=True)
# Below this many input elements a depthwise convolution stays XLA's grouped convolution: it costs
# milliseconds a step there, while the shifted sum's k x k slices and their gradients add compile
# time (three small-input parity test files: 289 s with shifted sums, 175 s without).
SHIFTED_DEPTHWISE_MIN_ELEMENTS = 1 << 20
# flax's nn.Conv: NHWC inputs, HWIO kernels.
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))


@contextlib.contextmanager
def convolution_primitives() -> Iterator[None]:
    """Within it, depthwise convolutions stay `conv_general_dilated` on every backend: for tools
    that find the layers of a traced network by its convolution primitives (models.report)."""
    token = _DEPTHWISE_AS_SHIFTS.set(False)
    try:
        yield
    finally:
        _DEPTHWISE_AS_SHIFTS.reset(token)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         precision: Any = None, **kwargs: Any) -> jax.Array:
    """`lax.conv_general_dilated`, except for a depthwise convolution (one filter per channel) of at
    least SHIFTED_DEPTHWISE_MIN_ELEMENTS inputs traced for the CPU backend: that is computed as the
    sum over the k x k kernel taps of the (padded, strided) input shifted by the tap and scaled per
    channel. XLA:CPU has no fast kernel for grouped convolutions: on 2 cores a 3x3 depthwise
    convolution of a (32, 56, 56, 144) map took 684 ms forward and 3.3 s with both gradients, the
    shifted sum 58 ms and 338 ms, because XLA fuses its multiply-adds (and autodiff of slices and
    products gives the gradients). Same parameters and the same values up to float rounding;
    products and sums in float32 as a convolution's accumulator, the result in the input's dtype.
    The price is memory: XLA:CPU materialises the k x k shifted copies as inputs of its fused
    multiply-adds, so EfficientNet-B0's train step at batch 32 peaks at 7.4 GB instead of 3.7 GB
    (for 5.3x its speed). Pass it as nn.Conv's `conv_general_dilated=`."""
    exact = lax.conv_general_dilated
    channels = lhs.shape[-1]
    depthwise = (
        _DEPTHWISE_AS_SHIFTS.get() and jax.default_backend() == 'cpu' and lhs.ndim == 4
        and lhs.size >= SHIFTED_DEPTHWISE_MIN_ELEMENTS
        and feature_group_count == channels > 1 and rhs.shape[2:] == (1, channels)
        and dimension_numbers == _NHWC and not any(d != 1 for d in (lhs_dilation or ()))
        and not any(d != 1 for d in (rhs_dilation or ())) and not kwargs)
    if not depthwise:
        return exact(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                     rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                     feature_group_count=feature_group_count, precision=precision, **kwargs)
    kernel_hw = rhs.shape[:2]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], kernel_hw, window_strides, padding)
    padded = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
    out_hw = [(padded.shape[1 + d] - kernel_hw[d]) // window_strides[d] + 1 for d in (0, 1)]
    total = jnp.zeros((lhs.shape[0], *out_hw, channels), jnp.float32)
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            tap = lax.slice(padded, (0, i, j, 0),
                            (lhs.shape[0], i + (out_hw[0] - 1) * window_strides[0] + 1,
                             j + (out_hw[1] - 1) * window_strides[1] + 1, channels),
                            (1, *window_strides, 1))
            total = total + tap.astype(jnp.float32) * rhs[i, j, 0].astype(jnp.float32)
    return total.astype(jnp.result_type(lhs.dtype, rhs.dtype))


class ConvNormAct(nn.Module):
    """Convolution, optional BatchNorm, optional activation: the conv unit of the Inception and
    MobileNet families (torchvision's `BasicConv2d` / `Conv2dNormActivation`).

    Children are named `conv` and `bn` as in torchvision, so weights map one to one. Without a
    `norm` factory the convolution has a bias, as in the pre-BatchNorm papers.
    """

    features: int
    kernel_size: int | tuple[int, int]
    strides: int = 1
    padding: Any = 0  # int, per-dimension pairs, or 'SAME' (TF-style, for Keras ports)
    groups: int = 1
    norm: ModuleDef | None = None
    activation: Callable[[jax.Array], jax.Array] | None = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = ((self.kernel_size, self.kernel_size) if isinstance(self.kernel_size, int)
                  else tuple(self.kernel_size))
        x = nn.Conv(self.features, kernel, strides=(self.strides, self.strides),
                    padding=self.padding, feature_group_count=self.groups,
                    conv_general_dilated=conv_general_dilated,
                    use_bias=self.norm is None, dtype=self.dtype, name='conv')(x)
        if self.norm is not None:
            x = self.norm(name='bn')(x)
        return x if self.activation is None else self.activation(x)


def batch_norm(train: bool, *, momentum: float = 0.9, epsilon: float = 1e-5,
               dtype: Any = jnp.float32, group_size: int = 0) -> ModuleDef:
    """The one BatchNorm factory all families use, built once per network and passed down.

    `momentum` is the running-average decay (flax convention: PyTorch's momentum 0.1 is 0.9 here,
    TF/Keras EfficientNet's 0.99 is 0.99). Statistics live in the `batch_stats` collection and,
    under jit on the `data` mesh, are computed over the whole global batch, or, with
    `group_size` > 0, over fixed groups of that many consecutive examples (`GroupedBatchNorm`).
    Either way they do not depend on how many devices share the batch.
    """
    if group_size > 0:
        return functools.partial(GroupedBatchNorm, group_size=group_size,
                                 use_running_average=not train, momentum=momentum,
                                 epsilon=epsilon, dtype=dtype)
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=momentum,
                             epsilon=epsilon, dtype=dtype)


class GroupedBatchNorm(nn.Module):
    """BatchNorm whose training statistics come from fixed groups of `group_size` examples.

    "Ghost" or virtual batch norm (Hoffer et al. 2017, "Train longer, generalize better", Sec. 4;
    google/flax#332): the batch is split into consecutive groups and each group is normalised
    with its own mean and variance, so the noise of BN statistics is set by `group_size`, not by
    the per-device batch. The running averages move toward the mean over groups of the group
    statistics. Parameters and statistics have nn.BatchNorm's names and shapes, so counts and
    checkpoints are the same.
    """

    group_size: int
    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
        running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            y = (x32 - running_mean.value) * jax.lax.rsqrt(running_var.value + self.epsilon)
        else:
            batch = x.shape[0]
            # Init traces a dummy batch (often of 1): one group, since only shapes matter then.
            group_size = batch if self.is_initializing() else self.group_size
            if batch % group_size:
                raise ValueError(f'bn_group_size={group_size} must divide the batch of {batch} '
                                 '(set train.batch_size to a multiple of it)')
            groups_GxNx = x32.reshape(batch // group_size, group_size, *x.shape[1:])
            axes = tuple(range(1, groups_GxNx.ndim - 1))
            mean = groups_GxNx.mean(axes, keepdims=True)
            var = jnp.square(groups_GxNx - mean).mean(axes, keepdims=True)
            y = ((groups_GxNx - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
            if not self.is_initializing():
                group_axes = (0, *axes)
                running_mean.value = (self.momentum * running_mean.value
                                      + (1 - self.momentum) * mean.mean(group_axes))
                running_var.value = (self.momentum * running_var.value
                                     + (1 - self.momentum) * var.mean(group_axes))
        if self.use_scale:
            y = y * self.param('scale', self.scale_init, (features,), jnp.float32)
        if self.use_bias:
            y = y + self.param('bias', self.bias_init, (features,), jnp.float32)
        return y.astype(self.dtype)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`, never losing more than 10%.

    The rule of MobileNetV2 (`_make_divisible` in the TF slim and torchvision code) and of
    EfficientNet's `round_filters`: round to the nearest multiple (at least `min_value`, default
    `divisor`), and add one more `divisor` when that fell below `round_limit` of the value.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", Fig. 3, Eq. 2-3).

    Rescales channels by `sigmoid(fc2(act(fc1(mean_hw(x)))))`. The bottleneck has
    `se_ratio * reduce_base` channels (`reduce_base` defaults to the input's channels), rounded
    the way each paper's code does: `divisor=8` is timm's SEModule used by SE-ResNet and ResNet-RS
    (`make_divisible`, never bumped up), `divisor=1` is TF EfficientNet's `max(1, int(c * ratio))`
    where `reduce_base` is the MBConv block's *input* width, not the expanded one it gates.
    Both projections are 1x1 convs with bias so PyTorch and TF checkpoints map one to one.
    """

    se_ratio: float
    reduce_base: int | None = None
    divisor: int = 1
    activation: str = 'relu'
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        base = (self.reduce_base or channels) * self.se_ratio
        if self.divisor == 1:
            reduced = max(1, int(base))
        else:
            reduced = make_divisible(base, self.divisor, round_limit=0.0)
        s_Nx1x1xC = jnp.mean(x, axis=(1, 2), keepdims=True)
        s_Nx1x1xR = nn.Conv(reduced, (1, 1), dtype=self.dtype, name='fc1')(s_Nx1x1xC)
        s_Nx1x1xR = get_activation(self.activation)(s_Nx1x1xR)
        s_Nx1x1xC = nn.Conv(channels, (1, 1), dtype=self.dtype, name='fc2')(s_Nx1x1xR)
        return x * nn.sigmoid(s_Nx1x1xC)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth", Sec. 3).

    Zeroes the whole residual branch of each example with probability `rate` (rng stream
    'drop_path') and scales the survivors by 1/(1 - rate) at train time, so the eval network is
    the plain full-depth one (the paper instead rescales by the survival probability at test
    time; the two agree in expectation). "Drop path" rather than "drop connect", as in timm: whole
    paths are dropped, not individual weights.
    """

    rate: float = 0.0
    deterministic: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
        deterministic = nn.merge_param('deterministic', self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # One draw per example.
        keep_mask = jax.random.bernoulli(self.make_rng('drop_path'), keep, mask_shape)
        return jnp.where(keep_mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


DROP_PATH_RULES = ('block', 'stage', 'tf_block')


def drop_path_rates(stage_depths: Sequence[int], rate: float,
                    rule: str = 'block') -> list[list[float]]:
    """Per-block drop-path rates for a network with `stage_depths` residual blocks per stage.

    'block': linear in the global block index, 0 for the first block and `rate` for the last
    (Huang et al. 2016 Eq. 4 with p_L = 1 - rate; timm's `drop_path_rate * idx / (n - 1)`).
    'stage': `rate * stage / 5` with the stem as stage 1 and the residual stages numbered 2..5,
    constant within a stage (TF ResNet-RS `get_drop_connect_rate`); for S stages the divisor is
    S + 1, so the last stage always gets the full rate.
    'tf_block': `rate * i / N` for the 0-based global block index i of N blocks, so the last
    block stops one step short of `rate` (TF EfficientNet, efficientnet_model.py `Model.call`:
    `survival_prob = 1 - drop_rate * idx / len(self._blocks)`).
    """
    if rule in ('block', 'tf_block'):
        total = sum(stage_depths)
        divisor = total - 1 if rule == 'block' else total
        rates, index = [], 0
        for depth in stage_depths:
            rates.append([rate * (index + j) / divisor if divisor else rate
                          for j in range(depth)])
            index += depth
        return rates
    if rule == 'stage':
        num_stages = len(stage_depths)
        return [[rate * (i + 2) / (num_stages + 1)] * depth for i, depth in enumerate(stage_depths)]
    raise ValueError(f'unknown drop_path_rule {rule!r}; valid: {", ".join(DROP_PATH_RULES)}')
