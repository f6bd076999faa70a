"""Linear probe: how linearly separable a trained network's features are.

  python -m jaxconv.linear_probe --workdir=runs/lenet5_digits [--layer=pooled] [--C=1.0]

The features of `layer` (any module path of `jaxconv.models.features`; default 'pooled', the
classifier's input) are computed once for the run's train split and its eval split, in eval
mode with the eval preprocessing; a multinomial logistic regression (scikit-learn, L2 penalty
C, standardised features) is fitted on the train features and scored on the eval ones. Writes
WORKDIR/probe_<layer>.json with both accuracies and prints the test one.
"""

import argparse
import json
import os

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


def main(argv: list[str] | None = None) -> dict:
    from jaxconv.inspect.run import load_run

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--layer', default=POOLED)
    parser.add_argument('--C', type=float, default=1.0)
    args = parser.parse_args(argv)
    run = load_run(args.workdir)
    dataset = run.config.dataset
    sets = [split_images(run, split) for split in (dataset.train_split, dataset.eval_split)]
    (train_x, train_y), (test_x, test_y) = [
        (extract(run.model, run.variables, x, args.layer), y) for x, y in sets]
    result = {'layer': args.layer, 'C': args.C, 'step': run.step,
              **probe(train_x, train_y, test_x, test_y, args.C)}
    with open(os.path.join(args.workdir, f'probe_{args.layer.replace("/", "_")}.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print(f'{args.layer}: test top-1 {100 * result["test_top1"]:.1f}% '
          f'(train {100 * result["train_top1"]:.1f}%)')
    return result


if __name__ == '__main__':
    main()
