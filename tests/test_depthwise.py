"""Depthwise convolutions computed as shifted sums on CPU (layers.conv_general_dilated) against
XLA's own grouped convolution, values and both gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxconv.models import create_model, layers
from jaxconv.models.report import layer_rows


@pytest.fixture(autouse=True)
def _shifted_sums_at_any_size(monkeypatch):
    """Small inputs keep these tests fast; the size rule has its own test."""
    monkeypatch.setattr(layers, 'SHIFTED_DEPTHWISE_MIN_ELEMENTS', 0)


def _reference(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=layers._NHWC,
                                    feature_group_count=x.shape[-1])


@pytest.mark.parametrize('kernel, strides, padding, size', [
    (3, (1, 1), 'SAME', 9), (3, (2, 2), 'SAME', 9), (5, (2, 2), 'SAME', 10),
    (3, (2, 2), ((1, 1), (1, 1)), 10), (5, (1, 1), ((2, 2), (2, 2)), 7), (3, (1, 2), 'VALID', 8)])
def test_shifted_sum_equals_the_grouped_convolution_and_its_gradients(kernel, strides, padding,
                                                                     size):
    x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, 6))
    ours = layers.conv_general_dilated(x, w, strides, padding, dimension_numbers=layers._NHWC,
                                       feature_group_count=6)
    jaxpr = str(jax.make_jaxpr(lambda x, w: layers.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=layers._NHWC, feature_group_count=6))(x, w))
    assert 'conv_general_dilated' not in jaxpr  # The CPU path was taken.
    np.testing.assert_allclose(ours, _reference(x, w, strides, padding), rtol=1e-5, atol=1e-5)

    def loss(function):
        return lambda x, w: jnp.sum(jnp.sin(function(x, w)))
    ours_grads = jax.grad(loss(lambda x, w: layers.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=layers._NHWC, feature_group_count=6)),
        argnums=(0, 1))(x, w)
    reference_grads = jax.grad(loss(lambda x, w: _reference(x, w, strides, padding)),
                               argnums=(0, 1))(x, w)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bfloat16_accumulates_in_float32_and_returns_bfloat16():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4), jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (3, 3, 1, 4), jnp.bfloat16)
    ours = layers.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=layers._NHWC,
                                       feature_group_count=4)
    exact = _reference(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), 'SAME')
    assert ours.dtype == jnp.bfloat16
    # Only the final rounding to bfloat16: within half a bfloat16 ulp (2^-8 relative) of exact.
    np.testing.assert_allclose(ours.astype(jnp.float32), exact, rtol=2 ** -8, atol=1e-6)


def test_grouped_but_not_depthwise_convolutions_stay_convolutions():
    x = jnp.ones((1, 8, 8, 8))
    conv = nn.Conv(8, (3, 3), feature_group_count=4,
                   conv_general_dilated=layers.conv_general_dilated)
    variables = conv.init(jax.random.key(0), x)
    assert 'conv_general_dilated' in str(jax.make_jaxpr(conv.apply)(variables, x))


def test_the_report_still_lists_depthwise_layers():
    rows, _ = layer_rows(create_model('mobilenet_v2', num_classes=10), resolution=32)
    assert sum(row.kind == 'DWConv' for row in rows) == 17  # One per inverted residual block.


def test_only_inputs_from_the_size_threshold_on_become_shifted_sums(monkeypatch):
    monkeypatch.setattr(layers, 'SHIFTED_DEPTHWISE_MIN_ELEMENTS', 2 * 8 * 8 * 6)
    w = jax.ShapeDtypeStruct((3, 3, 1, 6), jnp.float32)

    def primitives(batch):
        x = jax.ShapeDtypeStruct((batch, 8, 8, 6), jnp.float32)
        return str(jax.make_jaxpr(lambda x, w: layers.conv_general_dilated(
            x, w, (1, 1), 'SAME', dimension_numbers=layers._NHWC, feature_group_count=6))(x, w))
    assert 'conv_general_dilated' in primitives(1)
    assert 'conv_general_dilated' not in primitives(2)
