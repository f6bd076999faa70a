"""A registry of model names, in the manner of timm's `@register_model`.

Each family file registers a builder per published variant; the trainer, the
tests and the report only ever go through `create_model` and `list_models`.
"""

import dataclasses
import difflib
import functools
from collections.abc import Callable, Mapping
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


def register_variants(network: type[nn.Module],
                      variants: Mapping[str, Mapping[str, Any]]) -> None:
    """Registers each `name: {field: value}` of a family's literal variant table.

    The table is the one place a variant is defined (timm's `model_args`, big_vision's variant
    dicts): `create_model(name, **overrides)` builds `network(**{**variants[name], **overrides})`,
    with `variant` set to the name. Write every name out in full so that it can be grepped.
    """
    for name, defaults in variants.items():
        register_model(functools.partial(network, **{'variant': name, **defaults}), name=name)


def model_fields(name: str) -> list[str]:
    """The fields `create_model(name, ...)` accepts as overrides, when its builder says so."""
    builder = _REGISTRY[name]
    network = builder.func if isinstance(builder, functools.partial) else None
    if not (isinstance(network, type) and dataclasses.is_dataclass(network)):
        return []
    return [f.name for f in dataclasses.fields(network) if f.name not in ('parent', 'name')]


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
        fields = model_fields(name)
        valid = f'; valid fields: {", ".join(fields)}' if fields else ''
        raise TypeError(f'model {name!r}: {e}{valid}') from e
