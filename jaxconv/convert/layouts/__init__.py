"""Which reference model matches which jaxconv model, and how their module names correspond.

Each family's file here registers its layouts: `Layout(library, reference, model, source_module)`
reads "the weights of `library`'s model `reference` fill jaxconv's `model`; the jaxconv module
at path P takes the reference module `source_module(P)`". Importing this package registers all.
"""

import dataclasses
import importlib
import re
from collections.abc import Callable
from typing import Any

from jaxconv.convert.core import SourceModule

LIBRARIES = {'torchvision': 'torch', 'timm': 'torch', 'keras': 'keras'}
_LAYOUTS: dict[tuple[str, str], 'Layout'] = {}
_FAMILIES = ('alexnet', 'densenet', 'efficientnet', 'googlenet', 'inception', 'inception_resnet',
             'inception_v4', 'mobilenet', 'nasnet', 'resnet', 'shufflenet', 'squeezenet', 'vgg',
             'xception')


@dataclasses.dataclass(frozen=True)
class Layout:
    library: str  # torchvision | timm | keras
    reference: str  # The library's model name: 'resnet50', 'resnetrs50', 'ResNet50'.
    model: str  # The jaxconv model name.
    source_module: Callable[[str], SourceModule]
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # Layout switches.

    @property
    def framework(self) -> str:
        return LIBRARIES[self.library]


def register_layout(layout: Layout) -> None:
    if layout.library not in LIBRARIES:
        raise ValueError(f'unknown library {layout.library!r}; valid: {", ".join(LIBRARIES)}')
    key = (layout.library, layout.reference)
    if key in _LAYOUTS:
        raise ValueError(f'layout {layout.library}:{layout.reference} is registered twice')
    _LAYOUTS[key] = layout


def _load() -> None:
    for family in _FAMILIES:
        importlib.import_module(f'jaxconv.convert.layouts.{family}')


def get_layout(library: str, reference: str) -> Layout:
    """The layout of `library`'s model `reference`, or a one-line error listing the known ones."""
    _load()
    if (library, reference) not in _LAYOUTS:
        known = ', '.join(f'{lib}:{ref}' for lib, ref in sorted(_LAYOUTS) if lib == library)
        raise KeyError(f'no jaxconv layout for {library}:{reference}; known for {library}: '
                       f'{known or "none"}')
    return _LAYOUTS[(library, reference)]


def list_layouts() -> list[Layout]:
    _load()
    return [_LAYOUTS[key] for key in sorted(_LAYOUTS)]


def dotted(path: str) -> str:
    """The PyTorch spelling of a jaxconv module path: 'layer1_0/conv1' -> 'layer1.0.conv1'.

    jaxconv names a Sequential's i-th child `<name>_<i>` (flax names cannot hold dots); a trailing
    `_<digits>` on a path component becomes `.<digits>`.
    """
    return '.'.join(re.sub(r'_(\d+)$', r'.\1', part) for part in path.split('/'))


def chw_rows(channels: int, height: int, width: int) -> Callable[[str, Any], Any]:
    """The transform of the first FC after a flatten: PyTorch flattens a map as (C, H, W),
    jaxconv as (H, W, C), so the FC kernel's input rows are permuted; its bias is untouched."""

    def transform(leaf: str, array: Any) -> Any:
        if leaf != 'kernel':
            return array
        outputs = array.shape[-1]
        rows = array.reshape(channels, height, width, outputs).transpose(1, 2, 0, 3)
        return rows.reshape(channels * height * width, outputs)

    return transform
