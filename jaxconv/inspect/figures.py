"""Drawing and saving: every view is a PNG with its numbers beside it (.npz, and .csv for tables).

matplotlib draws off-screen (Agg); nothing here computes a model.
"""

import csv
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')  # Off-screen: works on servers and inside tests.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
HEATMAP = 'jet'  # Grad-CAM's and occlusion's figures use jet; so do we, for comparison.


def new_figure(rows: int, cols: int, cell: float = 1.4, **kwargs):
    """A figure of rows x cols image axes, `cell` inches each, ticks off."""
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell + 0.4), squeeze=False,
                             **kwargs)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def show_image(ax, image: np.ndarray, title: str | None = None, **kwargs) -> None:
    """An HWC image in [0, 1]; one channel is shown in grey."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest',
                  **kwargs)
    else:
        ax.imshow(image, interpolation='nearest', **kwargs)
    if title:
        ax.set_title(title, fontsize=7)


def overlay(ax, image: np.ndarray, heat: np.ndarray, title: str | None = None,
            alpha: float = 0.5, vmin: float | None = None, vmax: float | None = None) -> None:
    """`heat` (H, W) drawn over the image, as Grad-CAM's and occlusion's figures are."""
    show_image(ax, image, title)
    ax.imshow(heat, cmap=HEATMAP, alpha=alpha, vmin=vmin, vmax=vmax, interpolation='bilinear')


def outline(ax, image: np.ndarray) -> None:
    """The image's bright shapes as white contours (half its intensity range), for maps drawn
    without the image under them."""
    grey = image.mean(axis=-1)
    level = (grey.min() + grey.max()) / 2
    if grey.max() > grey.min():
        ax.contour(grey, levels=[level], colors='white', linewidths=0.8)


def tile(weights: np.ndarray) -> np.ndarray:
    """A filter (kh, kw, c) scaled so that zero is mid-grey and the largest |weight| is 0 or 1."""
    scale = np.abs(weights).max()
    return 0.5 + 0.5 * weights / scale if scale > 0 else np.full_like(weights, 0.5)


def label_row(ax, text: str) -> None:
    ax.set_ylabel(text, fontsize=7, rotation=0, ha='right', va='center')


def save(fig, out_dir: str, name: str, arrays: dict[str, np.ndarray] | None = None,
         rows: Sequence[dict] | None = None) -> list[str]:
    """Writes name.png, and name.npz / name.csv with the numbers drawn; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f'{name}.png')]
    fig.savefig(paths[0], dpi=DPI, bbox_inches='tight')
    plt.close(fig)
    if arrays:
        paths.append(os.path.join(out_dir, f'{name}.npz'))
        np.savez_compressed(paths[-1], **arrays)
    if rows:
        paths.append(os.path.join(out_dir, f'{name}.csv'))
        with open(paths[-1], 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return paths


def side_by_side(pngs: Sequence[str], titles: Sequence[str], path: str) -> str:
    """One figure holding the PNGs left to right, each under its title (the compare mode)."""
    images = [plt.imread(png) for png in pngs]
    height = max(image.shape[0] for image in images)
    widths = [image.shape[1] * height / image.shape[0] for image in images]
    # 15% over the images' own size, so that titles and gaps do not shrink them.
    fig, axes = plt.subplots(1, len(images), squeeze=False, width_ratios=widths,
                             figsize=(1.15 * sum(widths) / DPI, 1.15 * height / DPI + 0.4))
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis('off')
    fig.savefig(path, dpi=DPI, bbox_inches='tight')
    plt.close(fig)
    return path
