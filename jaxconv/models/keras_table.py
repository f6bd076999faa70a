"""The Keras Applications table (keras.io/api/applications), reproduced from the zoo itself.

    python -m jaxconv.models.keras_table [--no-macs]

For each Keras application, its `keras_*` jaxconv model gives the parameters by Keras'
convention (trainable weights plus BatchNorm moving statistics and other non-trainable state,
e.g. EfficientNet's 7-value input Normalization), the size of those values as float32 in MB
(2^20 bytes, the unit of Keras' own column: VGG16's 138,357,544 values are its 528 MB), and the
multiply-adds of one image at the model's default resolution (`count_macs`). Top-1 and top-5
are not measured here: they are Keras' published ImageNet figures, read from
`keras_applications.csv` (with their source) and marked as published.
"""

import argparse
import csv
import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxconv.models.flops import count_macs
from jaxconv.models.registry import create_model

PUBLISHED = Path(__file__).with_name('keras_applications.csv')


@dataclasses.dataclass(frozen=True)
class Row:
    application: str  # Keras' name: 'ResNet50V2'.
    model: str  # The jaxconv model: 'keras_resnet50v2'.
    parameters: int  # params + batch_stats, as Keras' count_params().
    size_mb: float  # parameters as float32, in 2^20 bytes.
    resolution: int  # The model's default resolution, where `macs` is counted.
    macs: int | None  # None when not asked for.
    published_size_mb: int
    published_top1: float
    published_top5: float


def published_rows() -> list[dict[str, str]]:
    with PUBLISHED.open() as f:
        return list(csv.DictReader(f))


def keras_parameters(model_name: str) -> int:
    """Keras' count: every variable of the model (shapes only, via `jax.eval_shape`)."""
    model = create_model(model_name)
    size = model.default_image_size
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                  jnp.zeros((1, size, size, 3)), train=False))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables))


def table(with_macs: bool = True) -> list[Row]:
    rows = []
    for entry in published_rows():
        model = create_model(entry['model'])
        parameters = keras_parameters(entry['model'])
        rows.append(Row(
            entry['application'], entry['model'], parameters, parameters * 4 / 2 ** 20,
            model.default_image_size,
            count_macs(model, model.default_image_size) if with_macs else None,
            int(entry['size_mb']), float(entry['top1']), float(entry['top5'])))
    return rows


def render(rows: list[Row]) -> str:
    """A markdown table; the published columns say so in their headers."""
    lines = ['| Keras model | jaxconv model | parameters | size (MB) | resolution | '
             'multiply-adds | top-1 (published) | top-5 (published) |',
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        macs = '-' if r.macs is None else f'{r.macs / 1e9:.2f}G'
        lines.append(f'| {r.application} | {r.model} | {r.parameters:,} | {r.size_mb:.0f} | '
                     f'{r.resolution} | {macs} | {r.published_top1:.1f}% | '
                     f'{r.published_top5:.1f}% |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.models.keras_table',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--no-macs', action='store_true',
                        help='skip the multiply-adds (the slowest column to trace)')
    args = parser.parse_args(argv)
    print(render(table(with_macs=not args.no_macs)))
    print(f'\nTop-1/top-5: published by Keras (keras.io/api/applications), not measured here; '
          f'sources in {PUBLISHED.name}.')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
