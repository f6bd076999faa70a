"""A trained run as the inspection views see it: its config, model, weights and images.

`load_run(workdir)` reads `config.json`, builds the model and restores the newest checkpoint's
params and BatchNorm statistics (or their EMA); it never writes to the workdir. Images come from
the run's eval split, or from files put through the same eval preprocessing, always as the model
sees them: normalised float32 NHWC (`eval_images`, `image_files`).
"""

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxconv import models
from jaxconv.train.checkpoint import Checkpointer, NoReadableCheckpointError
from jaxconv.train.state import stream_rngs


class RunError(ValueError):
    """A workdir that cannot be inspected; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A restored run: everything a view needs to call the model."""

    workdir: str
    config: ml_collections.ConfigDict
    model: Any  # flax.linen.Module
    variables: dict  # {'params': ..., 'batch_stats': ...}, on one device.
    step: int  # Of the checkpoint the variables come from.
    ema: bool  # True when the variables are the exponential moving averages.

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.workdir))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the eval images the model sees."""
        dataset = self.config.dataset
        size = dataset.eval_image_size or dataset.image_size
        return size, size, len(dataset.mean)

    def apply(self, images: jax.Array) -> jax.Array:
        """Eval-mode logits, jit-compiled; differentiable in `images`."""
        return _logits(self.model, self.variables, images)


@functools.partial(jax.jit, static_argnames=('model',))
def _logits(model: Any, variables: dict, images: jax.Array) -> jax.Array:
    return model.apply(variables, images, train=False)


def _tuples(value: Any) -> Any:
    """JSON gives lists where the config held tuples; module fields must stay hashable."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def read_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, 'config.json')
    if not os.path.isfile(path):
        raise RunError(f'{workdir} is not a run directory (no config.json); pass the --workdir '
                       'of a run started with python -m jaxconv.main')
    with open(path) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))


def load_run(workdir: str, ema: bool = False) -> Run:
    """The run in `workdir` with the variables of its newest readable checkpoint.

    Only params and BatchNorm statistics are read (Orbax partial restore), so the optimizer state
    never enters memory and the run's optimizer need not be rebuilt. The model computes in float32
    whatever `model.compute_dtype` the run trained with: gradients of the views need the range.
    `ema`: the exponential moving averages instead (runs with `train.ema_decay` > 0).
    """
    config = read_config(workdir)
    if ema and not config.train.ema_decay > 0:
        raise RunError(f'{workdir} kept no EMA weights (train.ema_decay=0); drop --ema')
    model = models.create_model(config.model.name, num_classes=config.model.num_classes,
                                **config.model.kwargs)
    size = config.dataset.image_size
    # The channel count is not in config.json; every dataset preset gives one mean per channel.
    dummy = jnp.zeros((1, size, size, len(config.dataset.mean)), jnp.float32)
    # Train mode, as the trainer initialises: training-only heads (aux logits) have params too.
    abstract = jax.eval_shape(lambda key: model.init(
        {'params': key, **stream_rngs(key)}, dummy, train=True), jax.random.key(0))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            abstract)
    prefix = 'ema_' if ema else ''
    target = {f'{prefix}params': abstract['params'],
              f'{prefix}batch_stats': abstract.get('batch_stats', {})}
    step, state = _restore_newest(workdir, target)
    variables = {'params': state[f'{prefix}params']}
    if state[f'{prefix}batch_stats']:
        variables['batch_stats'] = state[f'{prefix}batch_stats']
    return Run(workdir, config, model, variables, step, ema)


def _restore_newest(workdir: str, target: dict) -> tuple[int, dict]:
    """(step, the `target` items of the state) from the newest checkpoint that reads.

    Unlike the trainer's restore this moves nothing aside: inspection only reads.
    """
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
        raise RunError(f'{workdir} has no checkpoints/ yet; train it first (python -m '
                       'jaxconv.main --workdir ...) or wait for its first checkpoint')
    checkpointer = Checkpointer(workdir, keep=1)  # `keep` matters only when saving.
    try:
        return checkpointer.restore_subtree(target)
    except NoReadableCheckpointError as error:
        raise RunError(f'{error}; the model is rebuilt from config.json, which must be the config '
                       'the checkpoints were saved with') from None
    finally:
        checkpointer.close()


# ---- Images ----------------------------------------------------------------------------------
# The model's input is normalised float32. The functions below are the only places that know how
# pixels become that input (and back), so a change of the pipeline's contract changes only them.

def eval_images(run: Run, num_images: int | None,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels): the first `num_images` of the eval split (all when None), as the model
    sees them in the trainer's evaluation."""
    from jaxconv.data import pipeline  # Imports TensorFlow; only the views with data need it.

    dataset = run.config.dataset
    builder = pipeline.get_builder(dataset)
    total = pipeline.dataset_meta(builder, dataset).num_eval_examples
    wanted = total if num_images is None else min(num_images, total)
    eval_data = pipeline.eval_batches(builder, dataset,
                                      global_batch_size=min(batch_size, max(wanted, 1)))
    images, labels = [], []
    for batch in eval_data.dataset.as_numpy_iterator():
        real = batch['mask'] == 1
        images.append(batch['image'][real])
        labels.append(batch['label'][real])
        if sum(len(x) for x in labels) >= wanted:
            break
    return normalized(run, np.concatenate(images)[:wanted]), np.concatenate(labels)[:wanted]


def normalized(run: Run, pixels: np.ndarray) -> np.ndarray:
    """0..255 pixels (the pipeline's uint8) as the model's input, normalised as the trainer's
    steps do (`steps.normalize_images`)."""
    from jaxconv.train.steps import normalize_images

    dataset = run.config.dataset
    return np.asarray(normalize_images(pixels, dataset.mean, dataset.std))


def image_files(run: Run, paths: list[str]) -> np.ndarray:
    """Image files (PNG, JPEG, GIF, BMP) through the run's eval preprocessing and normalisation."""
    import tensorflow as tf

    from jaxconv.data import preprocess

    dataset = run.config.dataset
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise RunError(f'image file {path} not found')
        with open(path, 'rb') as f:
            data = f.read()
        try:
            image = preprocess.eval_image(tf.constant(data), dataset, len(dataset.mean))
        except tf.errors.InvalidArgumentError:
            raise RunError(f'{path} is not an image TensorFlow can decode (PNG, JPEG, GIF, '
                           'BMP)') from None
        images.append(preprocess.to_uint8(image, truncate=False).numpy())
    return normalized(run, np.stack(images))


def pixel_range(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The normalised values of pixel 0 and pixel 255 per channel: the valid input box.

    In float32 as the pipeline computes them, so clipping a real image to it changes nothing.
    """
    mean = np.asarray(run.config.dataset.mean, np.float32)
    std = np.asarray(run.config.dataset.std, np.float32)
    return (np.float32(0.0) - mean) / std, (np.float32(255.0) - mean) / std


def to_pixels(run: Run, images: np.ndarray) -> np.ndarray:
    """Normalised images back to [0, 1] intensities for display (clipped)."""
    mean, std = np.asarray(run.config.dataset.mean), np.asarray(run.config.dataset.std)
    return np.clip((np.asarray(images) * std + mean) / 255.0, 0.0, 1.0)


def class_names(run: Run) -> list[str]:
    """The eval split's label names (as the TFDS dataset declares them), by class index."""
    from jaxconv.data import pipeline

    builder = pipeline.get_builder(run.config.dataset)
    _, label_key = builder.info.supervised_keys
    return list(builder.info.features[label_key].names)
