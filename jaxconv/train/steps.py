"""Pure train and eval steps; the loop jits them over the `data` mesh.

Both return sums, not means (loss summed over examples, correct predictions counted), and the
loop adds them up on device between fetches. A window's mean is formed once on the host, so
padded eval examples and uneven windows cannot skew it (big_vision's classification evaluator).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconv.train import mixing
from jaxconv.train.state import TrainState, stream_rngs

Metrics = dict[str, jax.Array]
TRAIN_METRICS = ('loss_sum', 'correct_top1', 'correct_top5', 'count', 'nonfinite_steps')
EVAL_METRICS = ('loss_sum', 'correct_top1', 'correct_top5', 'count')


# Per-channel (mean, std) in 0..255 units: the dataset's normalisation, applied on device.
Normalization = tuple[Sequence[float], Sequence[float]]


def zero_metrics(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Host zeros; the loop places them on the mesh with one explicit transfer."""
    return {name: np.zeros((), np.float32) for name in names}


def normalize_images(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """(images - mean) / std per channel, as float32; images are uint8 (or float) in 0..255.

    The input pipeline sends uint8, a quarter of float32's bytes, and this runs on device. Call it
    before `model.apply` wherever images come from the pipeline (benchmarks, inspection tools).
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) - mean) / std


def _model_input(images: jax.Array, normalization: Normalization | None) -> jax.Array:
    if normalization is not None:
        return normalize_images(images, *normalization)
    if images.dtype == jnp.uint8:  # Raw pixels straight into the model are never intended.
        raise TypeError('uint8 images need normalization=(mean, std) (the dataset config\'s)')
    return images


def all_finite(tree: Any) -> jax.Array:
    """True when every float in `tree` is finite (False for any NaN or inf); a bool scalar."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else (
        jnp.asarray(True))


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy against labels smoothed toward uniform.

    Targets are (1 - eps) * onehot + eps / K (Szegedy et al. 2016, "Rethinking the Inception
    Architecture", Sec. 7), so every class, the true one included, gets eps / K.
    """
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def correct_in_top_k(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest logits (all of them when there are fewer)."""
    _, top_k = jax.lax.top_k(logits, min(k, logits.shape[-1]))
    return jnp.any(top_k == labels[:, None], axis=-1).astype(jnp.float32)


def aux_logits(intermediates: Any) -> list[jax.Array]:
    """Every array sowed under `aux_logits` (GoogLeNet's two heads, Inception v3's one)."""
    found = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(intermediates):
        if any(getattr(entry, 'key', None) == 'aux_logits' for entry in path):
            found.append(leaf)
    return found


def classification_loss(logits: jax.Array, intermediates: Any, labels: jax.Array, *,
                        label_smoothing: float, aux_loss_weight: float,
                        lam: jax.Array | float = 1.0) -> jax.Array:
    """Mean cross-entropy of the main head plus `aux_loss_weight` times each auxiliary head's.

    `lam` < 1 is a mixed batch's weight of its own labels (mixup/CutMix, `mixing.py`).
    """
    def head_loss(head_logits: jax.Array) -> jax.Array:
        return mixing.mixed_loss(lambda y: cross_entropy(head_logits, y, label_smoothing),
                                 labels, lam)

    loss = head_loss(logits)
    for aux in aux_logits(intermediates):
        loss += aux_loss_weight * head_loss(aux)
    return loss


def ema_decay_at(num_updates: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The decay of the `num_updates`-th average update (1 for the first).

    With `warmup`, TF's ExponentialMovingAverage(num_updates=global_step) rule
    min(decay, (1 + n) / (10 + n)), which lets early averages follow the weights closely.
    """
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    n = num_updates.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def update_ema(average: Any, value: Any, decay: jax.Array) -> Any:
    return jax.tree.map(lambda a, v: decay * a + (1.0 - decay) * v, average, value)


def train_step(state: TrainState, metrics: Metrics, batch: dict[str, jax.Array],
               root_key: jax.Array, *, model: nn.Module, tx: optax.GradientTransformation,
               label_smoothing: float, aux_loss_weight: float, ema_decay: float = 0.0,
               ema_warmup: bool = False, mix: dict | None = None,
               normalization: Normalization | None = None) -> tuple[TrainState, Metrics]:
    """One optimizer step on the global batch; BatchNorm sees the whole global batch under jit.

    `mix`: mixup/CutMix settings (`mixup_alpha`, `cutmix_alpha`, `prob`, `switch_prob`,
    `off_step`: no mixing from that step on; -1 never stops), or None. `normalization`: the
    dataset's (mean, std) for uint8 batches; None for batches that are normalised already.
    """
    # Folding in the step makes the random streams a function of (seed, step): resume-safe.
    model_key, mix_key = jax.random.split(jax.random.fold_in(root_key, state.step))
    rngs = stream_rngs(model_key)
    images, lam = _model_input(batch['image'], normalization), jnp.ones((), jnp.float32)
    if mix:
        active = (mix['off_step'] < 0) | (state.step < mix['off_step'])
        images, lam = mixing.mix_batch(
            mix_key, images, mixup_alpha=mix['mixup_alpha'], cutmix_alpha=mix['cutmix_alpha'],
            prob=mix['prob'], switch_prob=mix['switch_prob'], active=active)

    def loss_fn(params):
        (logits, mutated) = model.apply(
            {'params': params, 'batch_stats': state.batch_stats}, images, train=True,
            rngs=rngs, mutable=['batch_stats', 'intermediates'])
        loss = classification_loss(logits, mutated.get('intermediates', {}), batch['label'],
                                   label_smoothing=label_smoothing,
                                   aux_loss_weight=aux_loss_weight, lam=lam)
        return loss, (logits, mutated.get('batch_stats', {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # The updated weights too: an infinite learning rate leaves loss and gradients finite.
    finite = (jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
              & all_finite((params, batch_stats)))
    count = jnp.asarray(batch['label'].shape[0], jnp.float32)
    step_metrics = {
        'loss_sum': loss * count,
        'correct_top1': correct_in_top_k(logits, batch['label'], 1).sum(),
        'correct_top5': correct_in_top_k(logits, batch['label'], 5).sum(),
        'count': count,
        'nonfinite_steps': 1.0 - finite.astype(jnp.float32),
    }
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    if ema_decay > 0:
        decay = ema_decay_at(state.step + 1, ema_decay, ema_warmup)
        new_state = new_state.replace(
            ema_params=update_ema(state.ema_params, params, decay),
            ema_batch_stats=update_ema(state.ema_batch_stats, batch_stats, decay))
    return new_state, jax.tree.map(jnp.add, metrics, step_metrics)


def eval_step(variables: dict, metrics: Metrics, batch: dict[str, jax.Array], *,
              model: nn.Module, normalization: Normalization | None = None) -> Metrics:
    """Adds one eval batch's sums to `metrics`, counting only examples with mask 1."""
    logits = model.apply(variables, _model_input(batch['image'], normalization), train=False)
    mask = batch['mask'].astype(jnp.float32)
    step_metrics = {
        'loss_sum': (cross_entropy(logits, batch['label']) * mask).sum(),
        'correct_top1': (correct_in_top_k(logits, batch['label'], 1) * mask).sum(),
        'correct_top5': (correct_in_top_k(logits, batch['label'], 5) * mask).sum(),
        'count': mask.sum(),
    }
    return jax.tree.map(jnp.add, metrics, step_metrics)


def summarize(sums: dict[str, float]) -> dict[str, float]:
    """Host-side means of a window of summed metrics."""
    count = max(float(sums['count']), 1.0)
    return {'loss': float(sums['loss_sum']) / count, 'top1': float(sums['correct_top1']) / count,
            'top5': float(sums['correct_top5']) / count}

