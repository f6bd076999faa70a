"""Loading config files by spec (`configs/FILE.py[:ARG]`) and flattening them to dotted keys.

The trainer gets its config through ml_collections' `config_flags`; this is for the tools that
compare or check configs without running them (`jaxconv.recipes`, the CLI's error messages).
"""

import importlib.util
import os
import types
from typing import Any

import ml_collections


def load_module(path: str) -> types.ModuleType:
    """Imports the config file at `path` as a module (its get_config, and e.g. a ladder's RUNGS)."""
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or '.'
        files = sorted(f for f in os.listdir(folder) if f.endswith('.py')) if os.path.isdir(
            folder) else []
        raise FileNotFoundError(f'config file {path} not found; files in {folder}/: '
                                f'{", ".join(files) or "none"}')
    module_spec = importlib.util.spec_from_file_location('_jaxconv_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load(spec: str) -> ml_collections.ConfigDict:
    """Runs `get_config(ARG)` of the file in `spec` ('path.py' or 'path.py:ARG')."""
    path, _, arg = spec.partition(':')
    get_config = getattr(load_module(path), 'get_config', None)
    if not callable(get_config):
        raise ValueError(f'config file {path} has no get_config(arg) function; define one that '
                         'returns an ml_collections.ConfigDict')
    config = get_config(*([arg] if arg else []))
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f'get_config of {path} returned {type(config).__name__}, not an '
                         'ml_collections.ConfigDict (is its return statement missing?)')
    return config


def flatten(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
    """{'optim.base_lr': 0.1, ...}; tuples and lists stay whole values."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat
