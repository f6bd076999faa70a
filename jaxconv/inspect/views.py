"""The views the CLI offers: each takes a restored run, computes, draws and saves.

A view is `view(run, options, out_dir) -> [paths written]`; `VIEWS` maps the CLI's names to them.
The computations live in attribution.py, units.py, synthesis.py, adversarial.py and embedding.py;
this file only picks inputs, calls them and lays out the figure.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.inspect import adversarial, attribution, embedding, figures, synthesis, units
from jaxconv.inspect.receptive_field import receptive_field, to_input_grid
from jaxconv.inspect.run import Run, class_names, eval_images, image_files, pixel_range, to_pixels
from jaxconv.models.features import POOLED

MAX_DRAWN = 16  # Images drawn in a per-image figure; the .npz beside it holds all of them.


@dataclasses.dataclass(frozen=True)
class Options:
    """What the command line can change; None means the view's own default."""

    images: tuple[str, ...] = ()  # Image files; empty: the run's eval split.
    num_images: int | None = None  # Images from the eval split (None: the view's default).
    layer: str | None = None  # A module path, 'pooled' or 'logits' (list them with `layers`).
    channels: tuple[int, ...] = ()  # top-patches: channels to show (empty: the first 8).
    classes: tuple[int, ...] = ()  # class-max: classes to synthesise (empty: the first 10).
    eps: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)  # adversarial: of the pixel range.
    pgd_steps: int = 10  # adversarial: PGD iterations.
    method: str = 'tsne'  # embedding: tsne | pca.
    occluder: int | None = None  # occlusion: side of the grey square (None: image side / 4).
    stride: int | None = None  # occlusion: step between square positions (None: side / 4).
    steps: int = 200  # class-max: gradient ascent steps.
    batch_size: int = 256  # Images per jit-compiled call.
    seed: int = 0


def _inputs(run: Run, options: Options, default: int | None) -> tuple[np.ndarray, np.ndarray,
                                                                      bool]:
    """(images, classes, labelled): files with their predicted classes, or eval images with
    their true labels."""
    if options.images:
        images = image_files(run, list(options.images))
        return images, np.asarray(run.apply(images)).argmax(axis=-1), False
    images, labels = eval_images(run, options.num_images or default, options.batch_size)
    return images, labels, True


def _class_title(names: list[str], label: int, labelled: bool) -> str:
    return f'{"label" if labelled else "pred"} {names[label]}'


def filters(run: Run, options: Options, out_dir: str) -> list[str]:
    """The first convolution's kernels (or --layer's) as a grid, zero weight mid-grey."""
    layer, kernel = units.conv_kernels(run.model, run.variables, run.image_shape, options.layer)
    kh, kw, cin, cout = kernel.shape
    if cin in (1, 3):  # A kernel is an image: one tile per output filter.
        cols = min(cout, 16)
        fig, axes = figures.new_figure(-(-cout // cols), cols, cell=1.0)
        for i, ax in enumerate(axes.flat):
            if i < cout:
                figures.show_image(ax, figures.tile(kernel[..., i]))
            else:
                ax.axis('off')
    else:  # One row per output filter (at most 16), one tile per input channel (at most 16).
        rows, cols = min(cout, 16), min(cin, 16)
        fig, axes = figures.new_figure(rows, cols, cell=0.5)
        for o in range(rows):
            for i in range(cols):
                figures.show_image(axes[o, i], figures.tile(kernel[:, :, i:i + 1, o]))
    fig.suptitle(f'{run.name}: {layer}, {cout} filters of {kh}x{kw}x{cin}', fontsize=9)
    return figures.save(fig, out_dir, 'filters', {'kernel': kernel})


def activations(run: Run, options: Options, out_dir: str) -> list[str]:
    """The maps of --layer (default: the last spatial one) for a few images, 15 channels each."""
    images, classes, labelled = _inputs(run, options, default=4)
    layer = options.layer or attribution.last_spatial_layer(run.model, run.variables,
                                                            run.image_shape)
    maps = np.asarray(units.activations(run.model, run.variables, jnp.asarray(images), layer))
    names, pixels = class_names(run), to_pixels(run, images)
    if maps.ndim == 4:
        shown = min(maps.shape[-1], 15)
        fig, axes = figures.new_figure(min(len(images), MAX_DRAWN), shown + 1)
        for n in range(min(len(images), MAX_DRAWN)):
            figures.show_image(axes[n, 0], pixels[n], _class_title(names, classes[n], labelled))
            for c in range(shown):
                axes[n, c + 1].imshow(maps[n, ..., c], cmap='viridis', interpolation='nearest')
                if n == 0:
                    axes[n, c + 1].set_title(f'ch {c}', fontsize=7)
    else:  # A vector per image: one row of units per image.
        flat = maps.reshape(len(images), -1)
        fig, axes = figures.new_figure(1, 1, cell=6.0)
        axes[0, 0].imshow(flat, cmap='viridis', aspect='auto', interpolation='nearest')
        axes[0, 0].set_ylabel('image', fontsize=8)
        axes[0, 0].set_xlabel(f'unit (of {flat.shape[1]})', fontsize=8)
    fig.suptitle(f'{run.name}: activations of {layer} {tuple(maps.shape[1:])}', fontsize=9)
    return figures.save(fig, out_dir, 'activations', {'activations': maps, 'classes': classes})


def top_patches(run: Run, options: Options, out_dir: str) -> list[str]:
    """For each channel of --layer, the eval images' patches that excite it most (ZF Fig. 2)."""
    images, classes, _ = _inputs(run, options, default=None)
    layer = options.layer or attribution.last_spatial_layer(run.model, run.variables,
                                                            run.image_shape)
    values, positions = units.channel_maxima(run.model, run.variables, images, layer,
                                             options.batch_size)
    channels = options.channels or tuple(range(min(8, values.shape[1])))
    field = receptive_field(run.model, run.variables, layer, run.image_shape, options.seed)
    k = min(9, len(images))
    fig, axes = figures.new_figure(len(channels), k, cell=0.9)
    rows, patches = [], []
    for r, channel in enumerate(channels):
        if not 0 <= channel < values.shape[1]:
            raise ValueError(f'channel {channel} does not exist; {layer} has {values.shape[1]}')
        for rank, n in enumerate(units.top_images(values, channel, k)):
            box = field.box(*positions[n, channel])
            patch = units.crop(images[n], box)
            patches.append(patch)
            figures.show_image(axes[r, rank], to_pixels(run, patch))
            rows.append({'channel': channel, 'rank': rank, 'image': int(n),
                         'label': int(classes[n]), 'row': int(positions[n, channel, 0]),
                         'col': int(positions[n, channel, 1]),
                         'activation': float(values[n, channel]), 'top': box[0],
                         'left': box[1], 'height': box[2], 'width': box[3]})
        figures.label_row(axes[r, 0], f'ch {channel}')
    fig.suptitle(f'{run.name}: top {k} of {len(images)} images per channel of {layer} '
                 f'(receptive field {field.size[0]}x{field.size[1]})', fontsize=9)
    return figures.save(fig, out_dir, 'top-patches', {'patches': np.stack(patches)}, rows)


def occlusion(run: Run, options: Options, out_dir: str) -> list[str]:
    """The class probability with a grey square at each position (Zeiler & Fergus Fig. 7)."""
    images, classes, labelled = _inputs(run, options, default=8)
    height, width = run.image_shape[:2]
    size = options.occluder or max(1, height // 4)
    stride = options.stride or max(1, size // 4)
    maps = np.asarray(attribution.occlusion(
        run.model, run.variables, jnp.asarray(images), jnp.asarray(classes), size=size,
        stride=stride, batch_size=options.batch_size))
    names, pixels = class_names(run), to_pixels(run, images)
    # Each square position drawn at the square's centre, in the image's pixel coordinates.
    first, rows, cols = (size - 1) / 2, maps.shape[1], maps.shape[2]
    extent = (first - stride / 2, first + stride * (cols - 0.5),
              first + stride * (rows - 0.5), first - stride / 2)
    fig, axes = figures.new_figure(2, min(len(images), MAX_DRAWN))
    for n in range(min(len(images), MAX_DRAWN)):
        figures.show_image(axes[0, n], pixels[n], _class_title(names, classes[n], labelled))
        shown = axes[1, n].imshow(maps[n], cmap=figures.HEATMAP, vmin=0.0, vmax=1.0,
                                  extent=extent, interpolation='nearest')
        figures.outline(axes[1, n], pixels[n])
        axes[1, n].set_facecolor('lightgrey')  # Pixels no square is centred on.
        axes[1, n].set_xlim(-0.5, width - 0.5)
        axes[1, n].set_ylim(height - 0.5, -0.5)
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.5, label='p(class)')
    fig.suptitle(f'{run.name}: p(class) with a {size}x{size} grey square at each position '
                 f'(stride {stride})', fontsize=9)
    return figures.save(fig, out_dir, 'occlusion', {'probability': maps, 'classes': classes,
                                                    'size': size, 'stride': stride})


def saliency(run: Run, options: Options, out_dir: str) -> list[str]:
    """|d score / d pixel|, max over channels (Simonyan et al. 2014, Sec. 3.1)."""
    images, classes, labelled = _inputs(run, options, default=8)
    maps = np.asarray(attribution.saliency(run.model, run.variables, jnp.asarray(images),
                                           jnp.asarray(classes)))
    names, pixels = class_names(run), to_pixels(run, images)
    fig, axes = figures.new_figure(2, min(len(images), MAX_DRAWN))
    for n in range(min(len(images), MAX_DRAWN)):
        figures.show_image(axes[0, n], pixels[n], _class_title(names, classes[n], labelled))
        axes[1, n].imshow(maps[n], cmap='gray', interpolation='nearest')
    fig.suptitle(f'{run.name}: saliency of the class score', fontsize=9)
    return figures.save(fig, out_dir, 'saliency', {'saliency': maps, 'classes': classes})


def gradcam(run: Run, options: Options, out_dir: str) -> list[str]:
    """Grad-CAM at --layer (default: the last spatial layer), over the image."""
    images, classes, labelled = _inputs(run, options, default=8)
    layer = options.layer or attribution.last_spatial_layer(run.model, run.variables,
                                                            run.image_shape)
    maps = np.asarray(attribution.gradcam(run.model, run.variables, jnp.asarray(images),
                                          jnp.asarray(classes), layer))
    field = receptive_field(run.model, run.variables, layer, run.image_shape, options.seed)
    upsampled = to_input_grid(maps, field, *run.image_shape[:2])
    names, pixels = class_names(run), to_pixels(run, images)
    fig, axes = figures.new_figure(2, min(len(images), MAX_DRAWN))
    for n in range(min(len(images), MAX_DRAWN)):
        figures.show_image(axes[0, n], pixels[n], _class_title(names, classes[n], labelled))
        figures.overlay(axes[1, n], pixels[n], upsampled[n], vmin=0.0)
    fig.suptitle(f'{run.name}: Grad-CAM at {layer} {maps.shape[1]}x{maps.shape[2]}', fontsize=9)
    return figures.save(fig, out_dir, 'gradcam', {'gradcam': maps, 'upsampled': upsampled,
                                                  'classes': classes})


def class_max(run: Run, options: Options, out_dir: str) -> list[str]:
    """Inputs optimised for each class (Simonyan et al. 2014, Sec. 2), with their p(class)."""
    names = class_names(run)
    classes = np.asarray(options.classes or range(min(10, len(names))))
    low, high = pixel_range(run)
    images = synthesis.maximize_class(run.model, run.variables, jnp.asarray(classes),
                                      run.image_shape, steps=options.steps, low=low, high=high)
    probabilities = np.asarray(jax.nn.softmax(run.apply(images)))[np.arange(len(classes)),
                                                                  classes]
    # Stretched to the full grey range per image, as Simonyan et al. show them: the optimum
    # differs from the mean image by little, which the pixel range would show as flat grey.
    pixels = np.asarray(images)
    low_value = pixels.min(axis=(1, 2, 3), keepdims=True)
    pixels = (pixels - low_value) / np.maximum(pixels.max(axis=(1, 2, 3), keepdims=True)
                                               - low_value, 1e-12)
    cols = min(len(classes), 10)
    fig, axes = figures.new_figure(-(-len(classes) // cols), cols)
    for i, ax in enumerate(axes.flat):
        if i < len(classes):
            figures.show_image(ax, pixels[i], f'{names[classes[i]]} p={probabilities[i]:.2f}')
        else:
            ax.axis('off')
    fig.suptitle(f'{run.name}: class-score maximisation ({options.steps} steps; contrast '
                 'stretched per image)', fontsize=9)
    return figures.save(fig, out_dir, 'class-max', {'images': np.asarray(images),
                                                    'classes': classes,
                                                    'probability': probabilities})


def adversarial_view(run: Run, options: Options, out_dir: str) -> list[str]:
    """Eval accuracy under FGSM and PGD for each eps, and a few attacked images."""
    images, labels, labelled = _inputs(run, options, default=None)
    if not labelled:
        raise ValueError('adversarial accuracy needs labels; leave out --images to use the '
                         'eval split')
    low, high = pixel_range(run)
    std = np.asarray(run.config.dataset.std)
    rows, examples = [], {}
    for attack in adversarial.ATTACKS:
        for eps in options.eps:
            accuracy, attacked = adversarial.accuracy_under_attack(
                run.model, run.variables, images, labels,
                adversarial.epsilon_in_input_units(eps, std), low, high, attack=attack,
                steps=options.pgd_steps, seed=options.seed, batch_size=options.batch_size)
            rows.append({'attack': attack, 'eps': eps, 'top1': accuracy,
                         'images': len(images)})
            examples[(attack, eps)] = attacked[:6]
    shown_eps = max((e for e in options.eps if e <= 0.1), default=max(options.eps))
    names = class_names(run)
    fig = figures.plt.figure(figsize=(11, 3.6))
    grid = fig.add_gridspec(3, 7, width_ratios=[3.2, 1, 1, 1, 1, 1, 1])
    curve = fig.add_subplot(grid[:, 0])
    for attack in adversarial.ATTACKS:
        points = [(r['eps'], r['top1']) for r in rows if r['attack'] == attack]
        curve.plot(*zip(*points, strict=True), marker='o', label=attack.upper())
    curve.set_xlabel('eps (fraction of the pixel range)')
    curve.set_ylabel('eval top-1')
    curve.set_ylim(0, 1.02)
    curve.legend()
    curve.grid(alpha=0.3)
    shown = [('clean', images[:6])] + [(f'{a.upper()} {shown_eps:g}', examples[(a, shown_eps)])
                                        for a in adversarial.ATTACKS]
    for r, (title, batch) in enumerate(shown):
        predictions = np.asarray(run.apply(jnp.asarray(batch))).argmax(axis=-1)
        for c in range(min(6, len(batch))):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            figures.show_image(ax, to_pixels(run, batch[c]))
            ax.set_title(f'{names[predictions[c]]}', fontsize=7,
                         color='black' if predictions[c] == labels[c] else 'red')
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    fig.suptitle(f'{run.name}: accuracy under attack on {len(images)} eval images '
                 '(red: wrong prediction)', fontsize=9)
    arrays = {f'{a}_{e:g}': examples[(a, e)] for a, e in examples}
    return figures.save(fig, out_dir, 'adversarial', {**arrays, 'labels': labels[:6]}, rows)


def embedding_view(run: Run, options: Options, out_dir: str) -> list[str]:
    """--layer's features (default: pooled) of the eval split in 2-D, coloured by class."""
    images, labels, labelled = _inputs(run, options, default=None)
    layer = options.layer or POOLED
    features = embedding.extract(run.model, run.variables, images, layer, options.batch_size)
    points = embedding.project(features, options.method, options.seed)
    names = class_names(run)
    fig, axes = figures.plt.subplots(figsize=(5.5, 4.5))
    colours = figures.plt.get_cmap('tab10' if len(names) <= 10 else 'tab20')
    for label in np.unique(labels):
        chosen = labels == label
        axes.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colours(label % 20),
                     label=names[label])
    if len(names) <= 20:
        axes.legend(fontsize=7, markerscale=2, loc='center left', bbox_to_anchor=(1, 0.5),
                    title='label' if labelled else 'pred')
    axes.set_xticks([])
    axes.set_yticks([])
    method = {'tsne': 't-SNE', 'pca': 'PCA'}[options.method]
    axes.set_title(f'{run.name}: {method} of {layer} features '
                   f'({features.shape[1]}-d, {len(images)} images)', fontsize=9)
    rows = [{'image': i, 'label': int(labels[i]), 'x': float(p[0]), 'y': float(p[1])}
            for i, p in enumerate(points)]
    return figures.save(fig, out_dir, 'embedding', {'features': features, 'labels': labels},
                        rows)


VIEWS: dict[str, Callable[[Run, Options, str], list[str]]] = {
    'filters': filters,
    'activations': activations,
    'top-patches': top_patches,
    'occlusion': occlusion,
    'saliency': saliency,
    'gradcam': gradcam,
    'class-max': class_max,
    'adversarial': adversarial_view,
    'embedding': embedding_view,
}
