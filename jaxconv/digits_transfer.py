"""Transfer learning at CPU size: digits 0-4 teach a network that then learns 5-9 from few labels.

  python -m jaxconv.digits_transfer [--labels_per_class=5] [--seeds=5]

A LeNet-5 is pretrained on every training image of digits 0-4. On digits 5-9 with only
`labels_per_class` labelled training images per class, two copies train for the same number of
steps with the same optimizer: `transfer` starts from the pretrained convolutions C1 and C3 (C5,
F6 and the 5-way classifier start fresh, from the same draw as scratch's) and trains everything
but the classifier at 0.1x the LR (`optim.lr_multipliers`' mechanism, `backbone` group);
`scratch` starts from a random initialisation and trains everything at the full LR. Both are
scored on every test image of 5-9. The table has one row per method: the mean test top-1 over
seeds and its spread. The two tasks share strokes, not classes, so any gain is transferred features.

Data: the embedded digits (sklearn's 8x8 scans) with the trainer's fixed train/test split
(`jaxconv.data.digits.split_indices`), bilinearly resized to 32x32 and normalised with the
dataset preset's mean and std. Training: full-batch-style minibatches of up to 64, SGD with
Nesterov momentum 0.9, constant LR, no augmentation: the comparison, not the recipe, is the point.
"""

import argparse
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconv import models
from jaxconv.convert.core import flatten, unflatten
from jaxconv.convert.files import head_leaves
from jaxconv.data.digits import split_indices
from jaxconv.train import finetune, optim

MODEL = 'lenet5'
IMAGE_SIZE = 32
MEAN, STD = 78.0, 82.6  # configs/common.py's digits preset, 0..255 units.


@dataclasses.dataclass(frozen=True)
class Budget:
    pretrain_steps: int = 400
    finetune_steps: int = 60
    batch_size: int = 64
    learning_rate: float = 0.05
    backbone_lr_multiplier: float = 0.1  # Fine-tuning the pretrained layers gently.
    # Layers besides the classifier that transfer re-initialises: LeNet's fully connected C5
    # and F6 have specialised to 0-4 (transferring them lost 3-10 points); C1 and C3, the stroke
    # detectors, carry over.
    reinit: tuple[str, ...] = ('c5', 'f6')


def load_digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images NHWC float32 normalised, labels), 'test': ...} at 32x32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.float32)[..., None]
    images = jax.image.resize(jnp.asarray(pixels), (len(pixels), IMAGE_SIZE, IMAGE_SIZE, 1),
                              'bilinear')
    images = np.asarray((images - MEAN) / STD, np.float32)
    return {name: (images[index], digits.target[index].astype(np.int32))
            for name, index in split_indices(len(pixels)).items()}


def _classes(split: tuple[np.ndarray, np.ndarray], classes: range,
             per_class: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes`, labels renumbered from 0; `per_class` drawn at random."""
    images, labels = split
    rng = np.random.default_rng(seed)
    chosen = []
    for label in classes:
        index = np.flatnonzero(labels == label)
        chosen.append(index if per_class is None else rng.choice(index, per_class, replace=False))
    index = np.concatenate(chosen)
    return images[index], labels[index] - classes.start


def _head() -> set[str]:
    return {key.split('/', 1)[1] for key in head_leaves(MODEL, IMAGE_SIZE)}


def _train(params, images, labels, steps: int, budget: Budget, num_classes: int, seed: int,
           backbone_lr_multiplier: float = 1.0):
    model = models.create_model(MODEL, num_classes=num_classes)
    rules = ((finetune.group_pattern('backbone', _head()), backbone_lr_multiplier),)
    multipliers = optim.lr_multipliers(params, rules)  # The trainer's per-group LR mechanism.
    tx = optax.chain(optax.sgd(budget.learning_rate, momentum=0.9, nesterov=True),
                     optax.stateless(lambda updates, _: jax.tree.map(jnp.multiply, updates,
                                                                     multipliers)))

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({'params': p}, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    rng = np.random.default_rng(seed)
    batch = min(budget.batch_size, len(labels))
    for _ in range(steps):
        index = rng.choice(len(labels), batch, replace=False)
        params, opt_state, _ = step(params, opt_state, images[index], labels[index])
    return params


def _init(num_classes: int, seed: int):
    model = models.create_model(MODEL, num_classes=num_classes)
    dummy = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), jnp.float32)
    return model.init(jax.random.key(seed), dummy, train=False)['params']


def _accuracy(params, images, labels, num_classes: int) -> float:
    model = models.create_model(MODEL, num_classes=num_classes)
    logits = jax.jit(functools.partial(model.apply, train=False))({'params': params}, images)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def transfer_params(pretrained, fresh, reinit: tuple[str, ...] = ()) -> dict:
    """`fresh` with every leaf outside the classifier and the `reinit` layers taken from
    `pretrained`."""
    head = _head()
    pretrained, fresh = flatten(pretrained), flatten(fresh)
    return unflatten({key: value if key in head or key.split('/')[0] in reinit
                      else pretrained[key] for key, value in fresh.items()})


def run(labels_per_class: int = 5, seeds: int = 3, budget: Budget = Budget()) -> list[dict]:
    """[{'method': 'transfer'|'scratch', 'top1': mean, 'top1_std': ..., 'per_seed': [...]}]."""
    data = load_digits_split()
    source, target = range(0, 5), range(5, 10)
    x, y = _classes(data['train'], source)
    pretrained = _train(_init(5, seed=100), x, y, budget.pretrain_steps, budget, 5, seed=100)
    test_x, test_y = _classes(data['test'], target)
    scores = {'transfer': [], 'scratch': []}
    for seed in range(seeds):
        x, y = _classes(data['train'], target, labels_per_class, seed)
        fresh = _init(5, seed)
        for method, start in (('transfer', transfer_params(pretrained, fresh, budget.reinit)),
                              ('scratch', fresh)):
            multiplier = budget.backbone_lr_multiplier if method == 'transfer' else 1.0
            params = _train(start, x, y, budget.finetune_steps, budget, 5, seed, multiplier)
            scores[method].append(_accuracy(params, test_x, test_y, 5))
    return [{'method': method, 'top1': float(np.mean(values)), 'top1_std': float(np.std(values)),
             'per_seed': values} for method, values in scores.items()]


def table(rows: list[dict], labels_per_class: int) -> str:
    lines = [f'| method (digits 5-9, {labels_per_class} labels/class) | test top-1 (%) | '
             'std over seeds |', '|---|---|---|']
    lines += [f'| {row["method"]} | {100 * row["top1"]:.1f} | {100 * row["top1_std"]:.1f} |'
              for row in rows]
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--labels_per_class', type=int, default=1)
    parser.add_argument('--seeds', type=int, default=5)
    args = parser.parse_args()
    print(table(run(args.labels_per_class, args.seeds), args.labels_per_class))


if __name__ == '__main__':
    main()
