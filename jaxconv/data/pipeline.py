"""TFDS -> tf.data input pipelines: this process's shard, seeded order, exact evaluation.

Training order is a pure function of (seed, epoch): each epoch shuffles this process's shard with
a seed derived from the epoch number, and each example's augmentation is seeded by its position in
the stream. So the batch at step k is the same whether a run got there directly or resumed from a
checkpoint at step j < k: `train_batches(..., start_step=j)` skips j batches without computing them.

Evaluation covers the split exactly once: every process pads its shard to the same number of
batches with masked examples (`mask` 0), and the trainer sums correct predictions over mask 1 only.

`dataset.minival_fraction` holds the last fraction of the train split out as a minival (big_vision's
`train[99%:]` habit): `data_splits` turns it into two disjoint TFDS ranges of the train split, so
the trainer can select on minival and read the test split once, at the end.
"""

import dataclasses
import difflib
import math
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxconv.data import digits, preprocess

# TF is only a CPU-side input pipeline here; keep it off the GPUs so JAX gets all their memory.
tf.config.set_visible_devices([], 'GPU')

# Datasets whose builders ship inside jaxconv and can be prepared offline on first use.
EMBEDDED = {'digits': digits.Digits}


class DataError(ValueError):
    """A dataset that cannot be used as configured; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What the trainer needs to know about a dataset before reading it."""

    num_classes: int
    num_train_examples: int  # In this process's shard.
    num_eval_examples: int  # In the whole eval split.
    channels: int


def get_builder(cfg: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The TFDS builder for `cfg.name`, prepared; embedded datasets are prepared here, offline."""
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = set(tfds.list_builders(with_community_datasets=False)) | set(EMBEDDED)
        close = difflib.get_close_matches(cfg.name, sorted(known), n=3)
        hint = f'did you mean {", ".join(close)}? ' if close else ''
        raise DataError(
            f'unknown dataset {cfg.name!r}; {hint}embedded: {", ".join(EMBEDDED)}; or any name '
            'from tfds.list_builders() (e.g. cifar10, imagenet2012)') from None
    if not builder.is_prepared():
        if cfg.name in EMBEDDED:
            _prepare_embedded(builder)
        else:
            raise DataError(_not_prepared_message(builder, cfg.data_dir))
    return builder


def _prepare_embedded(builder: tfds.core.DatasetBuilder) -> None:
    # On a shared data_dir process 0 writes and the others wait; on host-local disks each host
    # still finds it unprepared after the barrier and writes its own copy.
    if jax.process_index() == 0:
        builder.download_and_prepare()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f'prepare {builder.name}')
        if not builder.is_prepared():
            builder.download_and_prepare()


def _not_prepared_message(builder: tfds.core.DatasetBuilder, data_dir: str) -> str:
    name = builder.name
    if getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
        files = ('ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar'
                 if name == 'imagenet2012' else 'the files its TFDS page lists')
        return (f'dataset {name!r} is not prepared in {data_dir}: put {files} in '
                f'{data_dir}/downloads/manual/ and run: tfds build {name} --data_dir={data_dir}')
    return (f'dataset {name!r} is not prepared in {data_dir}: run `tfds build {name} '
            f'--data_dir={data_dir}` on a machine with internet access, or copy a prepared '
            f'{name}/ folder there')


@dataclasses.dataclass(frozen=True)
class Splits:
    """The TFDS split expressions one run reads."""

    train: str  # What trains: dataset.train_split without its minival.
    minival: str | None  # Held out of dataset.train_split; None when minival_fraction is 0.
    test: str  # dataset.eval_split.

    @property
    def during_training(self) -> str:
        """What periodic evals and every "best" selection read: minival when there is one."""
        return self.minival or self.test


def data_splits(builder: tfds.core.DatasetBuilder, cfg: ml_collections.ConfigDict) -> Splits:
    """Carves `cfg.minival_fraction` off the end of the train split, as absolute example ranges.

    The ranges are positions in the prepared files, so the carve is the same on every process and
    every run, and the two ranges share no example.
    """
    fraction = cfg.minival_fraction
    if not fraction:
        return Splits(cfg.train_split, None, cfg.eval_split)
    if not 0 < fraction < 1:
        raise DataError(f'dataset.minival_fraction={fraction} must be in [0, 1) (0: no minival)')
    ranges = tfds.core.ReadInstruction.from_spec(cfg.train_split).to_absolute(builder.info.splits)
    if len(ranges) != 1:
        raise DataError(f'dataset.minival_fraction needs one contiguous dataset.train_split (such '
                        f'as train or train[:50%]), not {cfg.train_split!r}')
    (split_range,) = ranges
    start = split_range.from_ or 0
    end = (builder.info.splits[split_range.splitname].num_examples if split_range.to is None
           else split_range.to)
    held_out = round(fraction * (end - start))
    if not 0 < held_out < end - start:
        raise DataError(f'dataset.minival_fraction={fraction} of the {end - start} examples in '
                        f'{cfg.train_split!r} leaves {held_out} for minival; raise or lower it')
    name, boundary = split_range.splitname, end - held_out
    return Splits(f'{name}[{start}:{boundary}]', f'{name}[{boundary}:{end}]', cfg.eval_split)


def _process_split(split: str, drop_remainder: bool) -> str:
    return tfds.even_splits(split, n=jax.process_count(),
                            drop_remainder=drop_remainder)[jax.process_index()]


def _supervised_keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
    image_key, label_key = builder.info.supervised_keys
    return image_key, label_key


def dataset_meta(builder: tfds.core.DatasetBuilder, cfg: ml_collections.ConfigDict) -> DatasetMeta:
    """Reads class count, split sizes and channels from the builder's info, checking split names."""
    image_key, label_key = _supervised_keys(builder)
    splits = {}
    for key in ('train_split', 'eval_split'):
        try:
            splits[key] = builder.info.splits[cfg[key]].num_examples
        except (KeyError, ValueError):
            raise DataError(f'dataset.{key}={cfg[key]!r} is not a split of {builder.name}; '
                            f'valid: {", ".join(builder.info.splits)}') from None
    return DatasetMeta(
        num_classes=builder.info.features[label_key].num_classes,
        num_train_examples=builder.info.splits[
            _process_split(data_splits(builder, cfg).train, drop_remainder=True)].num_examples,
        num_eval_examples=splits['eval_split'],
        # dataset.channels=3 decodes grayscale as RGB (an ImageNet model fine-tuned on digits).
        channels=cfg.get('channels') or builder.info.features[image_key].shape[-1])


def _read(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
    """(image bytes, label) pairs in file order; images stay encoded until the map decodes them."""
    image_key, label_key = _supervised_keys(builder)
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={image_key: tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(interleave_cycle_length=16))
    return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # Parallel maps keep their order: same seed, same batches.
    return ds.with_options(options)


def train_batches(builder: tfds.core.DatasetBuilder, cfg: ml_collections.ConfigDict, *, seed: int,
                  global_batch_size: int, start_step: int = 0,
                  start_example: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Endless per-process training batches {'image': uint8 NHWC, 'label': i32}.

    The stream starts at `start_step` batches in, or at this process's `start_example`-th example
    when given (a run whose batch size changed counts examples, not steps). Images stay uint8 0..255
    until the train step normalises them on device (`steps.normalize_images`).
    """
    meta = dataset_meta(builder, cfg)
    batch_size = global_batch_size // jax.process_count()
    base = _read(builder, _process_split(data_splits(builder, cfg).train, drop_remainder=True))
    if cfg.cache:
        base = base.cache()

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        # Traced in its own graph: without its graph-level seed, TF's global seed (a caller's
        # tf.random.set_seed or keras.utils.set_random_seed) neither changes the order nor, when
        # it is 0, fails the trace ("symbolic tf.Tensor as a Python bool" in TF's get_seed).
        tf.compat.v1.get_default_graph().seed = None
        # A seed per epoch makes the order of epoch e independent of how we got to it.
        epoch_seed = tf.constant(seed, tf.int64) * 1_000_003 + epoch
        return base.shuffle(min(cfg.shuffle_buffer, meta.num_train_examples), seed=epoch_seed,
                            reshuffle_each_iteration=False)

    first_example = start_step * batch_size if start_example is None else start_example
    start_epoch, offset = divmod(first_example, meta.num_train_examples)
    ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(one_epoch)
    ds = ds.skip(offset).enumerate(start=first_example)
    stream_seed = tf.constant([seed, jax.process_index()], tf.int64)

    def augment(position: tf.Tensor, example: tuple[tf.Tensor, tf.Tensor]):
        image_bytes, label = example
        example_seed = tf.random.experimental.stateless_fold_in(stream_seed, position)
        image = preprocess.train_image(image_bytes, example_seed, cfg, meta.channels)
        return {'image': preprocess.to_uint8(image, truncate=False), 'label': label}

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(cfg.prefetch)
    return _options(ds).as_numpy_iterator()


@dataclasses.dataclass(frozen=True)
class EvalData:
    dataset: tf.data.Dataset  # Re-iterable; per-process {'image' (uint8), 'label', 'mask'} batches.
    num_batches: int  # The same on every process, so collectives line up.
    num_examples: int  # Real (unmasked) examples over all processes.
    split: str  # The TFDS split expression read.


def eval_batches(builder: tfds.core.DatasetBuilder, cfg: ml_collections.ConfigDict, *,
                 global_batch_size: int, split: str | None = None) -> EvalData:
    """`split` (default: the eval split) once, padded with masked examples to whole batches on
    every process."""
    meta = dataset_meta(builder, cfg)
    split = split or cfg.eval_split
    batch_size = global_batch_size // jax.process_count()
    shards = tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)
    largest_shard = max(builder.info.splits[shard].num_examples for shard in shards)
    num_batches = math.ceil(largest_shard / batch_size)
    shard = shards[jax.process_index()]
    shard_size = builder.info.splits[shard].num_examples

    def view(image_bytes: tf.Tensor, label: tf.Tensor):
        image = preprocess.eval_image(image_bytes, cfg, meta.channels)
        return {'image': preprocess.to_uint8(image, truncate=False), 'label': label,
                'mask': tf.constant(1, tf.int32)}

    ds = _read(builder, shard).map(view, num_parallel_calls=tf.data.AUTOTUNE)
    size = preprocess.eval_resolution(cfg)
    padding = tf.data.Dataset.from_tensors({
        'image': tf.zeros([size, size, meta.channels], tf.uint8),
        'label': tf.constant(0, tf.int32),
        'mask': tf.constant(0, tf.int32),
    }).repeat(num_batches * batch_size - shard_size)
    ds = ds.concatenate(padding).batch(batch_size)
    if cfg.cache:
        ds = ds.cache()
    return EvalData(_options(ds.prefetch(cfg.prefetch)), num_batches,
                    builder.info.splits[split].num_examples, split)
