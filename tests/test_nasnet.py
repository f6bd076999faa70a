"""NASNet-A: parameter counts and multiply-adds against Keras, timm and the paper; logits against
Keras' NASNetMobile / NASNetLarge and timm's nasnetalarge; the drop-path schedule; forward passes.

Full-size networks are only traced (`jax.eval_shape`) or run at 32x32 (Keras' smallest input),
batch 1. Forward tests use a one-cell-per-stack NASNet (1 @ 192) with the same code paths.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import compile_cheaply, keras_parity, torch_parity
from zoo import abstract_variables, count, numpy_variables, rbg_keys

from jaxconv.convert import Layout
from jaxconv.convert.layouts.nasnet import keras_source_module
from jaxconv.models import create_model, nasnet, report
from jaxconv.models.flops import count_macs
from jaxconv.models.layers import DropPath

TINY = dict(num_cells=1, penultimate_filters=192, stem_filters=8, num_classes=10)


# Keras counts BatchNorm moving statistics as parameters (../shared/reference/params.md).
@pytest.mark.parametrize('name,trainable,keras_total', [
    ('nasnetamobile', 5_289_978, 5_326_716),  # Keras NASNetMobile.
    ('keras_nasnetlarge', 88_753_150, 88_949_818),  # timm nasnetalarge; Keras NASNetLarge.
])
def test_parameter_counts(name, trainable, keras_total):
    variables = abstract_variables(create_model(name))
    assert count(variables['params']) == trainable
    assert count(variables['params']) + count(variables['batch_stats']) == keras_total


def test_timm_and_keras_large_differ_only_in_pool_padding():
    fields = {f: getattr(create_model('nasnetalarge'), f) for f in ('num_cells', 'stem_filters',
              'penultimate_filters', 'skip_reduction', 'zero_pad_max_pool', 'drop_path_rate')}
    keras = create_model('keras_nasnetlarge')
    assert {f: getattr(keras, f) for f in fields} == {**fields, 'zero_pad_max_pool': True}
    assert fields['zero_pad_max_pool'] is False


def test_multiply_adds():
    mobile = count_macs(create_model('nasnetamobile'), 224)
    assert round(mobile / 1e6) == 564  # Zoph et al. 2018: 564M mult-adds for 4 @ 1056.
    # timm nasnetalarge at 331 under torch's FlopCounterMode (params.md); the paper's 23.8B.
    assert count_macs(create_model('nasnetalarge'), 331) == 23_783_414_658


def test_logits_match_keras_nasnetmobile():
    assert keras_parity('NASNetMobile', resolution=32, batch=1) <= 1e-4


def test_logits_match_keras_nasnetlarge_topology():
    """Keras' NASNetLarge is its NASNet builder with 6 @ 4032, a 96-filter stem and
    skip_reduction; the same builder at 1 @ 192 runs every one of those code paths (and the
    layout's block numbering) at a sixth of the ops. (At full size, 32x32, the error is 8e-7;
    it is too slow for the suite.)"""
    from keras.src.applications.nasnet import NASNet

    layout = Layout('keras', 'NASNet', 'keras_nasnetlarge', keras_source_module(1))
    reference_kwargs = dict(penultimate_filters=192, num_blocks=1, stem_block_filters=96,
                            skip_reduction=True)
    assert keras_parity(NASNet, resolution=32, batch=1, reference_kwargs=reference_kwargs,
                        layout=layout, num_cells=1, penultimate_filters=192) <= 1e-4


def test_logits_match_timm():
    assert torch_parity('timm', 'nasnetalarge', resolution=32, batch=1) <= 1e-4


def test_strided_max_pool_padding_keras_zeros_timm_ignores():
    x = -jnp.arange(1.0, 26.0).reshape(1, 5, 5, 1)  # All negative: a zero pad would win.
    timm_style = nasnet.max_pool_strided(x, zero_pad=False)[0, :, :, 0]
    keras_style = nasnet.max_pool_strided(x, zero_pad=True)[0, :, :, 0]
    # 5 -> 3 with TF SAME: one pixel of padding on each side; windows start at -1, 1, 3.
    assert np.array_equal(timm_style, -np.array([[1, 2, 4], [6, 7, 9], [16, 17, 19]]))
    assert np.array_equal(keras_style, [[0, 0, 0], [0, -7, 0], [0, 0, 0]])  # Only (1, 1) is inside.


def test_scheduled_drop_path_rates_grow_with_the_cell():
    """TF-slim: cell i of n (stem and reduction cells counted) drops with rate * (i + 1) / n,
    each operation but the identities: 5 separable branches + 3 pools in a normal cell, 5 + 4
    in a reduction cell (Fig. 4)."""
    model = create_model('nasnetamobile', **TINY, drop_path_rate=0.3)
    rates, drops = {}, {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, nasnet.Cell):
            rates[module.name] = module.drop_path_rate
        if isinstance(module, DropPath):
            cell = module.scope.path[0]
            drops[cell] = drops.get(cell, 0) + 1
        return next_fun(*args, **kwargs)

    variables = abstract_variables(model)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), train=True,
                                             rngs=rbg_keys(0), mutable=['batch_stats']),
                       variables)
    order = ['cell_stem_0', 'cell_stem_1', 'cell_0', 'reduction_cell_0', 'cell_1',
             'reduction_cell_1', 'cell_2']
    assert list(rates) == order
    assert np.allclose([rates[c] for c in order], [0.3 * (i + 1) / 7 for i in range(7)])
    assert drops == {c: 9 if 'stem' in c or 'reduction' in c else 8 for c in order}


def test_train_forward_with_aux_head():
    """Train mode: dropout, BN statistics, the aux head. (Eval mode runs in the parity tests.)
    Drop path is left out: its 70 random draws would triple the compile time; its schedule is
    tested above and DropPath itself with the residual families."""
    model = create_model('nasnetalarge', **TINY, drop_path_rate=0.0, aux_logits=True)
    size = 67  # The aux head's 5x5 pool needs 5x5 maps at 1/16.
    variables = numpy_variables(model, size)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, size, size, 3)), jnp.float32)

    def train_step(v, x, rngs):
        return model.apply(v, x, train=True, rngs=rngs, mutable=['batch_stats', 'intermediates'])

    train = compile_cheaply(train_step, variables, x, rbg_keys(0))
    logits, state = train(variables, x, rbg_keys(0))
    other, _ = train(variables, x, rbg_keys(2))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
    assert not np.allclose(logits, other)  # Dropout draws from the rng.
    (aux,) = state['intermediates']['aux_logits']
    assert aux.shape == (2, 10) and np.isfinite(aux).all()
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), variables['batch_stats'],
                         state['batch_stats'])
    assert all(jax.tree_util.tree_leaves(moved))


def test_report_rows_account_for_every_parameter():
    model = create_model('nasnetamobile', **TINY)
    rows, params = report.layer_rows(model, 32)
    assert sum(row.params for row in rows) == count(params)
    assert any(row.layer == 'cell_stem_1/path_2' for row in rows)  # Factorised reduction.
    assert rows[-1].layer == 'last_linear' and rows[-1].output == (1, 10)


def test_bad_configurations_fail_in_one_line():
    with pytest.raises(ValueError, match='multiple of 24'):
        abstract_variables(create_model('nasnetamobile', penultimate_filters=1000))
    with pytest.raises(ValueError, match='at least 32x32'):
        abstract_variables(create_model('nasnetamobile'), size=16)
