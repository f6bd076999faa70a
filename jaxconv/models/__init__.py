"""Model families, one file each; importing this package registers every name."""

from jaxconv.models import lenet  # noqa: F401  (registers its names)
from jaxconv.models.registry import UnknownModelError, create_model, list_models, register_model

__all__ = ['UnknownModelError', 'create_model', 'list_models', 'register_model']
