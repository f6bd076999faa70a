"""Helpers of the model-zoo tests: shapes without compute, counts, and random variables that
need no compiled initialiser (XLA:CPU compiles random-number generation slowly)."""

import math

import jax
import jax.numpy as jnp
import numpy as np


def abstract_variables(model, size: int = 32) -> dict:
    """The variables of `model` on a size x size RGB image, as shapes (`jax.eval_shape`)."""
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))


def count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def numpy_variables(model, size: int) -> dict:
    """He-normal kernels; BN scales and running variances in [0.5, 1.5], biases and means in
    [-0.2, 0.2] (not the initial 1 and 0, which would hide a misplaced BN)."""
    gen = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name == 'kernel':
            std = math.sqrt(2 / math.prod(leaf.shape[:-1]))
            return jnp.asarray(gen.normal(0, std, leaf.shape), leaf.dtype)
        low, high = (0.5, 1.5) if name in ('scale', 'var') else (-0.2, 0.2)
        return jnp.asarray(gen.uniform(low, high, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, size))


def rbg_keys(seed: int) -> dict[str, jax.Array]:
    """Dropout and drop-path streams with the 'rbg' generator, quick to compile on CPU."""
    return {'dropout': jax.random.key(seed, impl='rbg'),
            'drop_path': jax.random.key(seed + 1, impl='rbg')}
