"""Logits of jaxconv models against torchvision and timm under transplanted weights.

Random weights, no download; eval mode; float32; relative error at most 1e-4 (DESIGN.md).
"""

import pytest
from parity import torch_parity

CASES = [
    ('torchvision', 'resnet50'),
    ('torchvision', 'resnext50_32x4d'),
    ('timm', 'resnet50d'),
    ('timm', 'seresnet50'),
    ('timm', 'resnetrs50'),
]


@pytest.mark.parametrize('library,reference', CASES)
def test_logits_match_reference(library, reference):
    assert torch_parity(library, reference, resolution=64) <= 1e-4
