"""BatchNorm over fixed virtual groups (`bn_group_size`), against nn.BatchNorm and by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.models.layers import GroupedBatchNorm, batch_norm


def _x():
    # Two groups of 4 with very different statistics.
    first = jax.random.normal(jax.random.key(0), (4, 3, 3, 2))
    second = 5.0 + 3.0 * jax.random.normal(jax.random.key(1), (4, 3, 3, 2))
    return jnp.concatenate([first, second])


def test_one_group_is_plain_batch_norm():
    x = _x()
    plain = nn.BatchNorm(use_running_average=False, momentum=0.9)
    grouped = batch_norm(True, group_size=8)()
    plain_vars, grouped_vars = plain.init(jax.random.key(2), x), grouped.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, plain_vars) == jax.tree.map(jnp.shape, grouped_vars)
    y_plain, stats_plain = plain.apply(plain_vars, x, mutable=['batch_stats'])
    y_grouped, stats_grouped = grouped.apply(grouped_vars, x, mutable=['batch_stats'])
    np.testing.assert_allclose(y_grouped, y_plain, atol=1e-5)
    for a, b in zip(jax.tree.leaves(stats_grouped), jax.tree.leaves(stats_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_each_group_is_normalised_with_its_own_statistics():
    x = _x()
    layer = GroupedBatchNorm(group_size=4)
    variables = layer.init(jax.random.key(0), x)
    y, updated = layer.apply(variables, x, mutable=['batch_stats'])
    for group in (y[:4], y[4:]):
        np.testing.assert_allclose(group.mean((0, 1, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(group.var((0, 1, 2)), 1.0, atol=1e-3)
    group_means = np.stack([x[:4].mean((0, 1, 2)), x[4:].mean((0, 1, 2))]).mean(0)
    group_vars = np.stack([x[:4].var((0, 1, 2)), x[4:].var((0, 1, 2))]).mean(0)
    np.testing.assert_allclose(updated['batch_stats']['mean'], 0.1 * group_means, rtol=1e-5)
    np.testing.assert_allclose(updated['batch_stats']['var'], 0.9 + 0.1 * group_vars, rtol=1e-5)
    # Eval mode normalises with the running statistics, as nn.BatchNorm does.
    evaluated = GroupedBatchNorm(group_size=4, use_running_average=True).apply(
        {**variables, **updated}, x)
    expected = (x - updated['batch_stats']['mean']) / np.sqrt(updated['batch_stats']['var'] + 1e-5)
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5, atol=1e-5)


def test_group_size_must_divide_the_batch():
    layer = GroupedBatchNorm(group_size=3)
    variables = layer.init(jax.random.key(0), _x())  # Init sees one group, whatever the batch.
    with pytest.raises(ValueError, match='bn_group_size=3 must divide the batch of 8'):
        layer.apply(variables, _x(), mutable=['batch_stats'])


def test_every_family_with_batch_norm_takes_bn_group_size():
    """model.kwargs.bn_group_size works for every registered model that uses BatchNorm."""
    import inspect

    from jaxconv.models import create_model, list_models
    from jaxconv.models.base import BatchNormKnobs

    with_batch_norm = 0
    for name in list_models():
        model = create_model(name, num_classes=10)
        source = inspect.getsource(inspect.getmodule(type(model)))
        if isinstance(model, BatchNormKnobs) or 'batch_norm(' in source:
            with_batch_norm += 1
            assert create_model(name, num_classes=10, bn_group_size=4).bn_group_size == 4, name
    assert with_batch_norm > 60
