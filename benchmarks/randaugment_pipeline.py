"""Input-pipeline images/s at 224 x 224 with and without RandAugment; prints a Markdown table.

  python benchmarks/randaugment_pipeline.py [--num-layers 2] [--magnitude 15] [--mode tf]
                                            [--files 64] [--epochs 8] [--batch 64]

Writes `--files` JPEGs (random sizes around 400 x 350, cut from scikit-learn's sample images) to a
temporary directory, then times a tf.data pipeline: read file -> inception crop (decoding only the
window) -> resize to 224 -> flip -> [RandAugment] -> batch. The first batch (tracing, warm-up) is
not timed. Wall-clock on this machine with tf.data's autotuned parallelism over all cores.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

from jaxconv.data.randaugment import randaugment  # noqa: E402

_SIZE = 224


def write_jpegs(directory: str, count: int, seed: int = 0) -> list[str]:
    """`count` JPEGs of about 400 x 350 pixels, random crops of the sklearn sample images."""
    rng = np.random.default_rng(seed)
    sources = load_sample_images().images  # Two 427 x 640 photos.
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        height, width = rng.integers(300, 401), rng.integers(350, 451)
        top = rng.integers(0, source.shape[0] - height + 1)
        left = rng.integers(0, source.shape[1] - width + 1)
        crop = source[top:top + height, left:left + width]
        paths.append(os.path.join(directory, f'{i:03d}.jpg'))
        tf.io.write_file(paths[-1], tf.io.encode_jpeg(crop, quality=90))
    return paths


def train_view(path: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Inception crop (window decoded from the JPEG), resize to 224, flip; uint8."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    data = tf.io.read_file(path)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(data), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, [_SIZE, _SIZE], method='bilinear')
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def images_per_second(paths: list[str], args: argparse.Namespace, augment: bool) -> float:
    """Throughput of the pipeline over `args.epochs` passes, first batch excluded."""
    def preprocess(index: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
        seed = tf.stack([index, tf.constant(0, tf.int64)])
        view_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = train_view(path, view_seed)
        if augment:
            image = randaugment(image, augment_seed, num_layers=args.num_layers,
                                magnitude=args.magnitude, mode=args.mode)
        return image

    dataset = (tf.data.Dataset.from_tensor_slices(paths).repeat(args.epochs).enumerate()
               .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
               .batch(args.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    batches = iter(dataset)
    next(batches)  # Tracing and warm-up.
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += int(batch.shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-layers', type=int, default=2)
    parser.add_argument('--magnitude', type=float, default=15)
    parser.add_argument('--mode', default='tf')
    parser.add_argument('--files', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--batch', type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        paths = write_jpegs(directory, args.files)
        plain = images_per_second(paths, args, augment=False)
        augmented = images_per_second(paths, args, augment=True)
    label = f'+ RandAugment(N={args.num_layers}, M={args.magnitude:g}, mode={args.mode})'
    print(f'{args.files} JPEGs x {args.epochs} epochs, batch {args.batch}, {_SIZE}x{_SIZE}, '
          f'{os.cpu_count()} CPU cores, tf {tf.__version__}\n')
    print('| pipeline | images/s | ms/image |')
    print('| --- | ---: | ---: |')
    for name, rate in (('crop + flip', plain), (label, augmented)):
        print(f'| {name} | {rate:.0f} | {1000 / rate:.2f} |')


if __name__ == '__main__':
    main()
