"""Adversarial examples: the fast gradient sign method and projected gradient descent.

Both perturb each image within an L-infinity ball of radius eps around it and inside the valid
pixel range, to raise the cross-entropy loss J of its true label:

- FGSM (Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples",
  Sec. 4): x' = x + eps * sign(grad_x J(x, y)), one step.
- PGD (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
  Sec. 2.1, Eq. 2): x_{t+1} = Proj_{x+S}(x_t + alpha * sign(grad_x J(x_t, y))) from a uniformly
  random start in the ball, `steps` times; alpha = 2.5 * eps / steps as in their experiments.

eps is given per channel in normalised units (`epsilon_in_input_units` converts from pixel
fractions), so a perturbation of eps = 0.1 changes a pixel by at most a tenth of its full range.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

ATTACKS = ('fgsm', 'pgd')


def _loss_gradient(model: nn.Module, variables: Any, images: jax.Array,
                   labels: jax.Array) -> jax.Array:
    def loss(images: jax.Array) -> jax.Array:
        logits = model.apply(variables, images, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    return jax.grad(loss)(images)  # Summed: each image's gradient is its own loss's.


def fgsm(model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array,
         eps: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    step = eps * jnp.sign(_loss_gradient(model, variables, images, labels))
    return jnp.clip(images + step, low, high)


def pgd(model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array,
        eps: jax.Array, low: jax.Array, high: jax.Array, *, steps: int,
        key: jax.Array) -> jax.Array:
    alpha = 2.5 * eps / steps

    def project(x: jax.Array) -> jax.Array:
        return jnp.clip(jnp.clip(x, images - eps, images + eps), low, high)

    def step(_, x: jax.Array) -> jax.Array:
        return project(x + alpha * jnp.sign(_loss_gradient(model, variables, x, labels)))

    start = project(images + jax.random.uniform(key, images.shape, minval=-1.0, maxval=1.0) * eps)
    return jax.lax.fori_loop(0, steps, step, start)


@functools.partial(jax.jit, static_argnames=('model', 'attack', 'steps'))
def attack_batch(model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array,
                 eps: jax.Array, low: jax.Array, high: jax.Array, *, attack: str,
                 steps: int = 10, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(adversarial images, their predictions) for one batch; `eps` may be traced, so one
    compilation serves every radius."""
    if attack == 'fgsm':
        adversarial = fgsm(model, variables, images, labels, eps, low, high)
    elif attack == 'pgd':
        adversarial = pgd(model, variables, images, labels, eps, low, high, steps=steps, key=key)
    else:
        raise ValueError(f'unknown attack {attack!r}; valid: {", ".join(ATTACKS)}')
    return adversarial, model.apply(variables, adversarial, train=False).argmax(axis=-1)


def epsilon_in_input_units(eps: float, std: np.ndarray) -> np.ndarray:
    """A perturbation of `eps` times the full pixel range (0..255), per normalised channel."""
    return (eps * 255.0 / np.asarray(std, np.float32)).astype(np.float32)


def accuracy_under_attack(model: nn.Module, variables: Any, images: np.ndarray,
                          labels: np.ndarray, eps: np.ndarray, low: np.ndarray,
                          high: np.ndarray, *, attack: str, steps: int = 10, seed: int = 0,
                          batch_size: int = 256) -> tuple[float, np.ndarray]:
    """(top-1 accuracy on the attacked images, the attacked images) over all `images`."""
    correct, attacked = 0, []
    key = jax.random.key(seed)
    for start in range(0, len(images), batch_size):
        key, batch_key = jax.random.split(key)
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        adversarial, predictions = attack_batch(model, variables, x, y, eps, low, high,
                                                attack=attack, steps=steps, key=batch_key)
        correct += int((np.asarray(predictions) == y).sum())
        attacked.append(np.asarray(adversarial))
    return correct / len(images), np.concatenate(attacked)
