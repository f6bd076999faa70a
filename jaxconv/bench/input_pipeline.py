"""Input pipeline images/s per CPU core: jaxconv's tf.data pipeline against timm's PIL transforms.

Both read the same JPEGs, written here: crops of scikit-learn's two sample photos at ImageNet's
typical size (about 400 x 350, quality 90), in two class folders. Each side runs in its own
process pinned to `cores` CPU cores (`os.sched_setaffinity`), so the figure is per core whatever
the libraries' thread pools do, and the bench process (which may hold JAX or torch) stays out of
it.

- jaxconv: the trainer's pipeline (`adapter.imagenet_train_batches`: TFDS records of the same
  JPEG bytes -> decode only the crop window -> Inception random-resized crop -> flip ->
  RandAugment(N, M) in the TF reference's mode -> normalise -> batch).
- timm: `timm.data.create_transform(is_training=True, auto_augment='rand-mM-nN-p1.0')` over
  torchvision's `ImageFolder` (PIL decode, RandomResizedCrop, flip, RandAugment, ToTensor,
  Normalize) batched by a DataLoader: in this process for one core, `cores` workers otherwise.
  `p1.0` applies every drawn op, as the TF reference does (timm's default applies each with
  probability 0.5, half the work).

The first batch (tracing, worker start-up, TFDS preparation) is not timed.

  python -m jaxconv.bench.input_pipeline {jaxconv,timm} --jpegs DIR --work DIR [--cpus 0] ...
runs one side, pinned to the given CPUs, and prints its figures as one JSON line;
`benchmark_pipelines` runs them all.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

LIBRARIES = ('jaxconv', 'timm')
_CLASSES = ('a', 'b')


def write_jpegs(directory: str, count: int, seed: int = 0) -> str:
    """`count` JPEGs of about 400 x 350 in `directory`/{a,b}/; returns `directory`."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    sources = load_sample_images().images  # Two 427 x 640 photos.
    for label in _CLASSES:
        os.makedirs(os.path.join(directory, label), exist_ok=True)
    for i in range(count):
        source = sources[i % len(sources)]
        height, width = rng.integers(300, 401), rng.integers(350, 451)
        top = rng.integers(0, source.shape[0] - height + 1)
        left = rng.integers(0, source.shape[1] - width + 1)
        crop = source[top:top + height, left:left + width]
        path = os.path.join(directory, _CLASSES[i % len(_CLASSES)], f'{i:05d}.jpg')
        Image.fromarray(crop).save(path, quality=90)
    return directory


# ---- The two sides (each in its own pinned process) ----------------------------------------

def _jaxconv_batches(args: argparse.Namespace):
    # TensorFlow as `jaxconv.main` runs it.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
    from jaxconv.bench import adapter, jpeg_dataset

    builder = jpeg_dataset.JpegFolder(args.jpegs, data_dir=os.path.join(args.work, 'tfds'))
    builder.download_and_prepare()
    batches = adapter.imagenet_train_batches(
        builder, batch=args.batch, resolution=args.resolution,
        randaugment_layers=args.layers, randaugment_magnitude=args.magnitude)
    for batch in batches:
        yield batch['image'].shape[0]


def _timm_batches(args: argparse.Namespace):
    from jaxconv.torch_support import import_torch

    torch, torchvision, timm = import_torch()
    torch.set_num_threads(1)
    transform = timm.data.create_transform(
        args.resolution, is_training=True, interpolation='bilinear',
        auto_augment=f'rand-m{args.magnitude:g}-n{args.layers}-p1.0' if args.layers else None,
        color_jitter=None)  # timm adds colour jitter when RandAugment is off; we do not.
    dataset = torchvision.datasets.ImageFolder(args.jpegs, transform=transform)
    workers = len(args.cpus) if len(args.cpus) > 1 else 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    while True:
        for images, _ in loader:
            yield images.shape[0]


def _measure(args: argparse.Namespace) -> dict:
    batches = (_jaxconv_batches if args.library == 'jaxconv' else _timm_batches)(args)
    next(batches)  # Start-up, not timed.
    count, start = 0, time.perf_counter()
    while count < args.images:
        count += next(batches)
    seconds = time.perf_counter() - start
    cores = len(args.cpus)
    return {'library': args.library, 'cores': cores, 'images': count,
            'randaugment': f'N={args.layers}, M={args.magnitude:g}' if args.layers else 'off',
            'img_per_sec': count / seconds, 'img_per_sec_per_core': count / seconds / cores}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('library', choices=LIBRARIES)
    parser.add_argument('--jpegs', required=True, help='folder of class folders of JPEGs')
    parser.add_argument('--work', required=True, help='scratch folder (TFDS records)')
    parser.add_argument('--cpus', default='0', help='comma-separated CPUs to pin this process to')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--images', type=int, default=256, help='images timed')
    parser.add_argument('--resolution', type=int, default=224)
    parser.add_argument('--layers', type=int, default=2, help='RandAugment N; 0: off')
    parser.add_argument('--magnitude', type=float, default=9)
    return parser.parse_args(argv)


# ---- Both sides, from the bench process ----------------------------------------------------

def _first_cpus(cores: int) -> list[int]:
    """The first `cores` CPUs this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise ValueError(f'--pipeline-cores {cores} is more than the {len(allowed)} CPU cores '
                         'this process may use')
    return allowed[:cores]


def run_side(library: str, *, jpegs: str, work: str, cores: int, batch: int, images: int,
             resolution: int, layers: int, magnitude: float) -> dict:
    """One side in a fresh process pinned to `cores` cores; its figures, or its error."""
    cpus = ','.join(str(cpu) for cpu in _first_cpus(cores))
    command = [sys.executable, '-m', 'jaxconv.bench.input_pipeline', library, '--jpegs', jpegs,
               '--work', work, '--cpus', cpus, '--batch', str(batch), '--images',
               str(images), '--resolution', str(resolution), '--layers', str(layers),
               '--magnitude', str(magnitude)]
    root = str(pathlib.Path(__file__).resolve().parents[2])  # Where `jaxconv` is importable.
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        filter(None, [root, os.environ.get('PYTHONPATH')]))}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ['no output'])[-1]
        return {'library': library, 'cores': cores, 'error': last[:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark_pipelines(work: str, *, cores: int, batch: int, images: int, files: int,
                        resolution: int, randaugments: list[tuple[int, float]]) -> list[dict]:
    """jaxconv and timm for each (N, M) of RandAugment (N = 0: none), on the same JPEGs."""
    jpegs = write_jpegs(os.path.join(work, 'jpegs'), files)
    return [run_side(library, jpegs=jpegs, work=work, cores=cores, batch=batch, images=images,
                     resolution=resolution, layers=layers, magnitude=magnitude)
            for layers, magnitude in randaugments for library in LIBRARIES]


if __name__ == '__main__':
    arguments = _parse()
    arguments.cpus = [int(cpu) for cpu in arguments.cpus.split(',')]
    # Pinned before TensorFlow or torch start their thread pools.
    os.sched_setaffinity(0, arguments.cpus)
    print(json.dumps(_measure(arguments)))
