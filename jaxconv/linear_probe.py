"""Linear probe: how linearly separable a trained network's features are.

  python -m jaxconv.linear_probe --workdir=runs/lenet5_digits [--layer=pooled] [--C=1.0] [--out=DIR]

The features of `layer` (any module path of `jaxconv.models.features`; default 'pooled', the
classifier's input) are computed once for the run's train split and its eval split, in eval
mode with the eval preprocessing; a multinomial logistic regression (scikit-learn, L2 penalty
C, standardised features) is fitted on the train features and scored on the eval ones. Writes
WORKDIR/probe_<layer>.json with both accuracies and prints the test one; with `--out=DIR` it writes
DIR/summary.json instead (the test top-1 as `final_top1`), which is how a study's probe runs
(`jaxconv.study.probe_run`) report, so they tabulate like training runs.
"""

import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

from jaxconv.models.features import POOLED, features


def extract(model, variables, images: np.ndarray, layer: str = POOLED,
            batch_size: int = 256) -> np.ndarray:
    """(N, D) features of `layer` for normalised NHWC `images`, flattened per example."""
    compute = jax.jit(lambda v, x: features(model, v, x, layer))
    chunks = [np.asarray(compute(variables, images[i:i + batch_size]))
              for i in range(0, len(images), batch_size)]
    return np.concatenate(chunks).reshape(len(images), -1)


def probe(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
          test_labels: np.ndarray, C: float = 1.0) -> dict[str, float]:
    """Train and test top-1 of a logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    classifier.fit(train_features, train_labels)
    return {'train_top1': float(classifier.score(train_features, train_labels)),
            'test_top1': float(classifier.score(test_features, test_labels)),
            'num_features': int(train_features.shape[1])}


def split_images(run, split: str, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Every image of `split` with its label, eval-preprocessed and normalised."""
    from jaxconv.data import pipeline
    from jaxconv.inspect.run import normalized

    data = pipeline.eval_batches(pipeline.get_builder(run.config.dataset), run.config.dataset,
                                 split=split, global_batch_size=batch_size)
    images, labels = [], []
    for batch in data.dataset.as_numpy_iterator():
        real = batch['mask'] == 1
        images.append(batch['image'][real])
        labels.append(batch['label'][real])
    return normalized(run, np.concatenate(images)), np.concatenate(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', required=True, help='a trained run')
    parser.add_argument('--layer', default=POOLED)
    parser.add_argument('--C', type=float, default=1.0, help='inverse L2 strength, > 0')
    parser.add_argument('--out', help='write DIR/summary.json here (a study run) instead of '
                        'WORKDIR/probe_<layer>.json')
    args = parser.parse_args(argv)
    try:
        result = run_probe(args.workdir, args.layer, args.C, args.out)
    except (ValueError, OSError, KeyError) as error:
        if os.environ.get('JAXCONV_TRACEBACK'):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f'jaxconv.linear_probe: error: {message}', file=sys.stderr)
        return 1
    print(f'{args.layer}: test top-1 {100 * result["test_top1"]:.1f}% '
          f'(train {100 * result["train_top1"]:.1f}%)')
    return 0


def run_probe(workdir: str, layer: str = POOLED, C: float = 1.0, out: str | None = None) -> dict:
    """Probes `layer` of the run in `workdir`; returns and writes the result (see the module
    docstring for where). Raises ValueError with a one-line reason for bad input."""
    from jaxconv.inspect.run import load_run
    from jaxconv.study import records

    if not (math.isfinite(C) and C > 0):
        raise ValueError(f'--C must be a positive number (the inverse L2 strength); got {C}')
    started = time.time()
    run = load_run(workdir)
    dataset = run.config.dataset
    sets = [split_images(run, split) for split in (dataset.train_split, dataset.eval_split)]
    (train_x, train_y), (test_x, test_y) = [
        (extract(run.model, run.variables, x, layer), y) for x, y in sets]
    if not (np.isfinite(train_x).all() and np.isfinite(test_x).all()):
        raise ValueError(f'the features of {layer!r} in {workdir} are not finite')
    result = {'layer': layer, 'C': C, 'step': run.step, 'ema': run.ema,
              **probe(train_x, train_y, test_x, test_y, C)}
    if out is None:
        with open(os.path.join(workdir, f'probe_{layer.replace("/", "_")}.json'), 'w') as f:
            json.dump(result, f, indent=2)
    else:
        os.makedirs(out, exist_ok=True)
        records.write_json(os.path.join(out, records.SUMMARY), {
            **result, 'final_top1': result['test_top1'], 'probe_of': os.path.abspath(workdir),
            'train_split': dataset.train_split, 'eval_split': dataset.eval_split,
            'wall_seconds': time.time() - started})
    return result


if __name__ == '__main__':
    sys.exit(main())
