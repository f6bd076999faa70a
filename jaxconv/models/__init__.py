"""Model families, one file each; importing this package registers every name."""

from jaxconv.models import (
    alexnet,  # noqa: F401  (registers its names)
    bn_inception,  # noqa: F401  (registers its names)
    densenet,  # noqa: F401  (registers its names)
    efficientnet,  # noqa: F401  (registers its names)
    fractalnet,  # noqa: F401  (registers its names)
    googlenet,  # noqa: F401  (registers its names)
    inception,  # noqa: F401  (registers its names)
    inception_resnet,  # noqa: F401  (registers its names)
    inception_v4,  # noqa: F401  (registers its names)
    lenet,  # noqa: F401  (registers its names)
    mobilenet,  # noqa: F401  (registers its names)
    nasnet,  # noqa: F401  (registers its names)
    nin,  # noqa: F401  (registers its names)
    preact_resnet,  # noqa: F401  (registers its names)
    resnet,  # noqa: F401  (registers its names)
    shufflenet,  # noqa: F401  (registers its names)
    squeezenet,  # noqa: F401  (registers its names)
    vgg,  # noqa: F401  (registers its names)
    xception,  # noqa: F401  (registers its names)
)
from jaxconv.models.features import LayerNotFoundError, features, list_layers  # noqa: F401
from jaxconv.models.registry import UnknownModelError, create_model, list_models, register_model

__all__ = ['UnknownModelError', 'create_model', 'list_models', 'register_model']
