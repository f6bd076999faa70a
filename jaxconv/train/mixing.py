"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), on device inside the train step.

Each batch is mixed with itself reversed (the partner of example i is example B-1-i, as in timm's
`Mixup`), with one lambda per batch drawn from Beta(alpha, alpha):

- mixup: images lambda * x + (1 - lambda) * partner;
- CutMix: a box of area (1 - lambda) of the image, centred uniformly and clipped to the image, is
  pasted from the partner, and lambda is corrected to the area actually kept (timm's correct_lam).

Since cross-entropy is linear in the target, the loss of the mixed batch is
lambda * CE(labels) + (1 - lambda) * CE(partner labels), which `mixed_loss` applies.
"""

import jax
import jax.numpy as jnp


def _cutmix_box_mask(key: jax.Array, height: int, width: int, lam: jax.Array) -> jax.Array:
    """[H, W] bool: True inside a box of area about (1 - lam) * H * W at a uniform centre."""
    cut_ratio = jnp.sqrt(1.0 - lam)
    cut_h, cut_w = jnp.floor(height * cut_ratio), jnp.floor(width * cut_ratio)
    cy_key, cx_key = jax.random.split(key)
    cy = jax.random.randint(cy_key, (), 0, height).astype(jnp.float32)
    cx = jax.random.randint(cx_key, (), 0, width).astype(jnp.float32)
    y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows = jnp.arange(height, dtype=jnp.float32)[:, None]
    cols = jnp.arange(width, dtype=jnp.float32)[None, :]
    return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


def mix_batch(key: jax.Array, images_BHWC: jax.Array, *, mixup_alpha: float, cutmix_alpha: float,
              prob: float, switch_prob: float,
              active: jax.Array | bool = True) -> tuple[jax.Array, jax.Array]:
    """(mixed images, lambda): the weight of each example's own label in its mixed target.

    With both alphas positive, CutMix is used with probability `switch_prob`, else mixup; the
    batch is mixed at all with probability `prob`, and only while `active` (mixing can stop after
    an epoch). Unmixed batches come back unchanged with lambda 1.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images_BHWC, jnp.ones((), jnp.float32)
    apply_key, switch_key, mixup_key, cutmix_key, box_key = jax.random.split(key, 5)
    use_cutmix = (cutmix_alpha > 0) & ((mixup_alpha <= 0) | (
        jax.random.uniform(switch_key) < switch_prob))
    lam_mixup = jax.random.beta(mixup_key, max(mixup_alpha, 1e-3), max(mixup_alpha, 1e-3))
    lam_cutmix = jax.random.beta(cutmix_key, max(cutmix_alpha, 1e-3), max(cutmix_alpha, 1e-3))
    apply = (jax.random.uniform(apply_key) < prob) & active
    lam = jnp.where(apply, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0)
    partner = images_BHWC[::-1]
    _, height, width, _ = images_BHWC.shape
    box_HW = _cutmix_box_mask(box_key, height, width, lam) & use_cutmix & apply
    lam = jnp.where(use_cutmix, 1.0 - box_HW.mean(), lam)  # The area actually kept.
    mixed_up = lam * images_BHWC + (1.0 - lam) * partner
    cut = jnp.where(box_HW[None, :, :, None], partner, images_BHWC)
    return jnp.where(use_cutmix, cut, mixed_up).astype(images_BHWC.dtype), lam


def mixed_loss(per_example_loss, labels: jax.Array, lam: jax.Array) -> jax.Array:
    """lambda * loss(labels) + (1 - lambda) * loss(partner labels), as a batch mean."""
    own = per_example_loss(labels).mean()
    return lam * own + (1.0 - lam) * per_example_loss(labels[::-1]).mean()
