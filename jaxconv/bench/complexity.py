"""The complexity chart (Canziani, Paszke & Culurciello 2017, "An Analysis of Deep Neural Network
Models for Practical Applications", Figure 2): published ImageNet top-1 against multiply-adds per
image, bubble area proportional to parameters, one bubble per registered ImageNet model.

Published figures come from `published_top1.csv` beside this file, one row per model with its
source (every registered model has a row; CIFAR ones say so): torchvision's weight metadata
(`IMAGENET1K_V1`, the original recipes, so architectures are compared under their own papers'
training), the tensorflow/tpu READMEs (EfficientNet with AutoAugment, ResNet-RS), or the Keras
Applications table. Multiply-adds (`count_macs`) and inference parameters (no auxiliary heads)
are computed here, at the resolution the top-1 was measured at. A registered model without a row
is reported, so a new family cannot silently miss the chart.
"""

import csv
import dataclasses
import math
import os

import jax

from jaxconv import models
from jaxconv.bench.measure import abstract_variables
from jaxconv.models.flops import count_macs

PUBLISHED = os.path.join(os.path.dirname(__file__), 'published_top1.csv')
COLUMNS = ('model', 'family', 'top1', 'gmacs', 'mparams', 'resolution', 'source')


@dataclasses.dataclass(frozen=True)
class Published:
    model: str
    dataset: str
    top1: float | None
    resolution: int
    source: str


def read_published(path: str = PUBLISHED) -> dict[str, Published]:
    with open(path, newline='') as f:
        return {row['model']: Published(row['model'], row['dataset'],
                                        float(row['top1']) if row['top1'] else None,
                                        int(row['resolution']), row['source'])
                for row in csv.DictReader(f)}


def chart_rows(names: list[str] | None = None,
               published: dict[str, Published] | None = None) -> tuple[list[dict], list[str]]:
    """(one row per registered ImageNet model with a published top-1, registered names lacking a
    row in the data file)."""
    published = published if published is not None else read_published()
    names = names if names is not None else models.list_models()
    rows, missing = [], []
    for name in names:
        entry = published.get(name)
        if entry is None:
            missing.append(name)
            continue
        if entry.dataset != 'imagenet' or entry.top1 is None:
            continue
        model = models.create_model(name)
        # Inference parameters, as the published counts give them (GoogLeNet 6.6M, not 13.0M).
        variables = abstract_variables(model, entry.resolution, 3, train=False)
        params = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
        rows.append({'model': name, 'family': type(model).__module__.rsplit('.', 1)[-1],
                     'top1': entry.top1,
                     'gmacs': round(count_macs(model, entry.resolution) / 1e9, 4),
                     'mparams': round(params / 1e6, 4), 'resolution': entry.resolution,
                     'source': entry.source})
    return rows, missing


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: str) -> None:
    """Top-1 against GMACs (log axis); bubble area proportional to parameters; colour: family."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    families = sorted({row['family'] for row in rows})
    colours = {f: plt.get_cmap('tab20')(i % 20) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(12, 7.5), dpi=100)
    for family in families:
        members = [row for row in rows if row['family'] == family]
        ax.scatter([r['gmacs'] for r in members], [r['top1'] for r in members],
                   s=[8 * r['mparams'] for r in members], color=colours[family], alpha=0.55,
                   edgecolors='black', linewidths=0.5, label=family)
    for row in rows:
        ax.annotate(row['model'], (row['gmacs'], row['top1']), fontsize=6.5,
                    xytext=(3, 3), textcoords='offset points')
    ax.set_xscale('log')
    ax.set_xlabel('multiply-adds per image (G, at the resolution of the published top-1)')
    ax.set_ylabel('published ImageNet top-1 (%)')
    ax.set_title('Top-1 against multiply-adds; bubble area proportional to parameters')
    ax.grid(True, which='both', alpha=0.3)
    by_family = ax.legend(loc='lower right', fontsize=8, title='family (file)', markerscale=0.4)
    for handle in by_family.legend_handles:
        handle.set_sizes([40])
    ax.add_artist(by_family)
    sizes = [ax.scatter([], [], s=8 * size, color='grey', alpha=0.4) for size in (5, 25, 100)]
    ax.legend(sizes, ['5M params', '25M', '100M'], loc='upper left', fontsize=8,
              labelspacing=1.5, borderpad=1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_chart(out_dir: str, names: list[str] | None = None) -> dict:
    """complexity.png and complexity.csv in `out_dir`; returns paths and the missing names."""
    os.makedirs(out_dir, exist_ok=True)
    rows, missing = chart_rows(names)
    paths = {'png': os.path.join(out_dir, 'complexity.png'),
             'csv': os.path.join(out_dir, 'complexity.csv')}
    write_csv(rows, paths['csv'])
    plot(rows, paths['png'])
    return {**paths, 'models': len(rows), 'missing_from_data_file': missing}
