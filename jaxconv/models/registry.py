"""A registry of model names, in the manner of timm's `@register_model`.

Each family file registers a builder per published variant; the trainer, the
tests and the report only ever go through `create_model` and `list_models`.
"""

import difflib
from collections.abc import Callable
from typing import Any

import flax.linen as nn

ModelBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered."""


def register_model(builder: ModelBuilder, name: str | None = None) -> ModelBuilder:
    """Registers `builder` under `name` (default: the function's name); usable as a decorator."""
    name = name or builder.__name__
    if name != name.lower():
        raise ValueError(f'model names are lowercase; got {name!r}')
    if name in _REGISTRY:
        raise ValueError(f'model {name!r} is registered twice')
    _REGISTRY[name] = builder
    return builder


def list_models() -> list[str]:
    """All registered names, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 1000, **overrides: Any) -> nn.Module:
    """Builds the registered model `name` with `num_classes` outputs.

    `overrides` replace the variant's defaults (e.g. `width_multiplier=0.5`, `dtype=jnp.bfloat16`);
    an override that the family does not have is a TypeError naming the module's fields.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f'did you mean {", ".join(close)}? ' if close else ''
        raise UnknownModelError(
            f'unknown model {name!r}; {hint}valid names: {", ".join(list_models())}')
    try:
        return _REGISTRY[name](num_classes=num_classes, **overrides)
    except TypeError as e:  # An override the family does not have.
        raise TypeError(f'model {name!r}: {e}') from e
