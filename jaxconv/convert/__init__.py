"""Weight import from the reference libraries (timm, torchvision, Keras) into jaxconv variables.

`core` translates leaves and tensor layouts once; `layouts` says, per family, which reference
module holds the weights of each jaxconv module. Logits-parity tests and the importer both use it.
"""

from jaxconv.convert.core import TransplantError, flatten, transplant, unflatten
from jaxconv.convert.layouts import Layout, get_layout, list_layouts

__all__ = ['Layout', 'TransplantError', 'flatten', 'get_layout', 'list_layouts', 'transplant',
           'unflatten']
