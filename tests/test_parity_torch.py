"""Logits of jaxconv models against torchvision and timm under transplanted weights.

Random weights, no download; eval mode; float32; relative error at most 1e-4 (DESIGN.md). Each
model runs at a small resolution it accepts; for VGG, AlexNet and GoogLeNet one where the adaptive
pools have uneven, overlapping windows (a 3x3 map pooled to 7x7, 4x4 to 6x6, 6x6 to 4x4), so the
parity covers the pool and the CHW flatten order of the FC after it, not only the identity at 224.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from parity import (
    jaxconv_outputs,
    jaxconv_twin,
    random_images,
    reference_outputs,
    relative_error,
    torch_parity,
    torch_parity_errors,
    torch_reference,
)

from jaxconv.convert import TransplantError, get_layout, transplant
from jaxconv.convert.core import torch_state
from jaxconv.convert.layouts import dotted
from jaxconv.models.layers import adaptive_avg_pool, pool2d_ceil, window_output_size
from jaxconv.torch_support import import_torch

CASES = [  # (library, reference, resolution)
    ('torchvision', 'resnet50', 64),
    ('torchvision', 'resnext50_32x4d', 64),
    ('torchvision', 'wide_resnet50_2', 32),
    ('timm', 'resnet50d', 64),
    ('timm', 'seresnet50', 64),
    ('timm', 'resnetrs50', 64),
    ('torchvision', 'googlenet', 96),  # Stage 4 at 6x6: 2x2/2 pool, aux pools 6x6 -> 4x4.
    ('timm', 'tf_efficientnet_b0', 64),  # TF "SAME": even sizes pad strided convs unevenly.
    ('timm', 'efficientnet_b0', 64),
    ('torchvision', 'vgg11_bn', 96),  # A 3x3 map pooled to 7x7.
    ('torchvision', 'alexnet', 159),  # A 4x4 map pooled to 6x6.
    ('torchvision', 'densenet121', 32),
    ('torchvision', 'squeezenet1_1', 32),
    ('torchvision', 'mobilenet_v2', 32),
    ('timm', 'mobilenetv1_100', 32),
    ('torchvision', 'inception_v3', 75),
]
# Their constructor arguments: aux heads built (their weights must map too), no input transform.
REFERENCE_KWARGS = {'googlenet': dict(aux_logits=True, transform_input=False, init_weights=True),
                    'inception_v3': dict(aux_logits=True, transform_input=False,
                                         init_weights=True)}
HE_INIT = {'googlenet', 'inception_v3'}  # Their own inits leave the convs out of the logits.


@pytest.mark.parametrize('library,reference,resolution', CASES,
                         ids=[f'{lib}-{ref}' for lib, ref, _ in CASES])
def test_logits_match_reference(library, reference, resolution):
    assert torch_parity(library, reference, resolution=resolution,
                        reference_kwargs=REFERENCE_KWARGS.get(reference),
                        he_init=reference in HE_INIT) <= 1e-4


def test_googlenet_train_mode_with_aux_heads_matches_torchvision():
    """Training mode: BatchNorm on batch statistics, both aux heads run; dropout off both sides
    (it draws different masks). torchvision returns (logits, aux2, aux1); jaxconv sows aux1
    first; each output is compared by name."""
    errors = torch_parity_errors(
        'torchvision', 'googlenet', resolution=96, train=True, he_init=True,
        reference_kwargs=dict(REFERENCE_KWARGS['googlenet'], dropout=0.0, dropout_aux=0.0),
        dropout_rate=0.0, aux_dropout_rate=0.0)
    assert sorted(errors) == ['aux_logits1', 'aux_logits2', 'logits']
    assert max(errors.values()) <= 1e-4, errors


@pytest.mark.parametrize('library,reference,resolution,wrong', [
    ('timm', 'tf_efficientnet_b0', 64, dict(padding='symmetric')),  # timm's native padding.
    ('torchvision', 'googlenet', 96, dict(last_pool_window=3)),  # The paper's pool before 5a.
])
def test_a_wrong_layout_is_caught(library, reference, resolution, wrong):
    """The parity measure sees layout details: TF-padded weights run with PyTorch's symmetric
    padding, or torchvision's GoogLeNet run with the paper's 3x3/2 pool before inception5a,
    differ beyond 1e-4 (on the same weights that match within it with the right layout)."""
    module = torch_reference(library, reference, he_init=reference in HE_INIT,
                             **REFERENCE_KWARGS.get(reference, {}))
    images = random_images(resolution)
    expected = reference_outputs(module, images)['logits']
    model, variables = jaxconv_twin(library, reference, module, resolution, **wrong)
    error = relative_error(jaxconv_outputs(model, variables, images)['logits'], expected)
    assert error > 1e-3, (wrong, error)


def test_a_wrong_mapping_fails_with_a_table():
    """Two modules swapped in a layout fail with a table naming every offending key."""
    layout = get_layout('torchvision', 'squeezenet1_1')
    module = torch_reference('torchvision', 'squeezenet1_1')
    swapped = {'features_3': 'features.4', 'features_4': 'features.3'}

    def wrong(path: str) -> str:
        block, _, rest = path.partition('/')
        return f'{swapped[block]}.{rest}' if block in swapped else dotted(path)

    model, variables = jaxconv_twin('torchvision', 'squeezenet1_1', module, 32)
    with pytest.raises(TransplantError) as error:
        transplant(variables, torch_state(module), wrong, layout.framework)
    lines = str(error.value).splitlines()
    # features.3 reads 64 channels, features.4 128: both squeeze kernels misfit, nothing else.
    assert lines[0] == '2 weight(s) do not match the jaxconv model:'
    assert all('shape' in line and '/squeeze/kernel' in line for line in lines[1:])


@pytest.mark.parametrize('height,width,size', [(3, 3, 7), (9, 5, 7), (14, 14, 4), (6, 7, 4),
                                               (4, 4, 6), (1, 2, 6), (7, 7, 7)])
def test_adaptive_avg_pool_is_torchs(height, width, size):
    """Uneven, overlapping and repeating windows (n < size) included."""
    torch, _, _ = import_torch()
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                                       size).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), size), expected, rtol=1e-6,
                               atol=1e-6)


def test_pool_output_sizes_and_ceil_mode_values_are_torchs():
    """window_output_size (which the minimum-input checks use) against torch's pooling shapes for
    every small case, and the ceil-mode max pool's values where windows hang over the edge."""
    torch, _, _ = import_torch()
    for n in range(1, 12):
        for window, stride, padding in ((2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 0)):
            for ceil_mode in (False, True):
                pool = torch.nn.MaxPool2d(window, stride, padding, ceil_mode=ceil_mode)
                try:
                    expected = pool(torch.zeros(1, 1, n, n)).shape[-1]
                except RuntimeError:  # "Output size is too small".
                    expected = 0
                assert max(window_output_size(n, window, stride, padding, ceil_mode), 0) \
                    == expected, (n, window, stride, padding, ceil_mode)
    x = np.random.default_rng(1).normal(size=(1, 14, 9, 2)).astype(np.float32)
    for window in (2, 3):
        expected = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                                  window, 2, ceil_mode=True)
        np.testing.assert_array_equal(pool2d_ceil('max', jnp.asarray(x), window, 2),
                                      expected.numpy().transpose(0, 2, 3, 1))
