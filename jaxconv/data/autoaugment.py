"""AutoAugment's learned ImageNet policy as TF ops for tf.data `map`, built on the RandAugment ops.

Cubuk, Zoph, Mane, Vasudevan and Le 2019, "AutoAugment: Learning Augmentation Strategies from
Data" (arXiv:1805.09501). A policy is a list of sub-policies, each a short sequence of
(op, probability, level). Per image, one sub-policy is drawn uniformly and each of its ops is then
applied with its own probability, in order.

The policy here is `v0` of the TF reference that trained the EfficientNet AutoAugment checkpoints,
tensorflow/tpu `models/official/efficientnet/autoaugment.py` (`policy_v0`, applied by
`distort_image_with_autoaugment` -> `build_and_apply_nas_policy`):

- The ops and level -> argument maps are RandAugment's `tf` mode (randaugment.py): the same
  reference functions (`NAME_TO_FUNC`, `level_to_arg`), fill 128, signed arguments negated with
  probability 1/2, Solarize's uint8 threshold and Posterize's clamped shift included. The clamp is
  TF's CPU kernel, where the input pipeline runs: Posterize at level 2 (0 bits) keeps one bit
  rather than blacking the image out (timm's copy of v0 notes the black image on TPU).
- Only the constants differ: AutoAugment translates 250 px at level 10 (v0's TranslateY at level 9
  moves 225 px whatever the image size) and sizes cutout at 100 (v0 has no Cutout).
- An op fires when `floor(u + p)` is 1 for u ~ U[0, 1), i.e. with probability exactly p (so 0.0
  never and 1.0 always) (`_apply_func_with_prob`).

Every draw is stateless from one seed (`sample_plan`), so an image's augmentation is a function of
its position in the stream, as with RandAugment. Images are uint8 H x W x C, C = 3 or 1.
"""

import functools
from typing import NamedTuple

import tensorflow as tf

from jaxconv.data import randaugment

# (op, probability, level) per step of each sub-policy: tensorflow/tpu efficientnet/autoaugment.py
# `policy_v0`, in its order; the same since the July 2019 commit that added it (b3293eb).
POLICY_V0 = (
    (('Equalize', 0.8, 1), ('ShearY', 0.8, 4)),
    (('Color', 0.4, 9), ('Equalize', 0.6, 3)),
    (('Color', 0.4, 1), ('Rotate', 0.6, 8)),
    (('Solarize', 0.8, 3), ('Equalize', 0.4, 7)),
    (('Solarize', 0.4, 2), ('Solarize', 0.6, 2)),
    (('Color', 0.2, 0), ('Equalize', 0.8, 8)),
    (('Equalize', 0.4, 8), ('SolarizeAdd', 0.8, 3)),
    (('ShearX', 0.2, 9), ('Rotate', 0.6, 8)),
    (('Color', 0.6, 1), ('Equalize', 1.0, 2)),
    (('Invert', 0.4, 9), ('Rotate', 0.6, 0)),
    (('Equalize', 1.0, 9), ('ShearY', 0.6, 3)),
    (('Color', 0.4, 7), ('Equalize', 0.6, 0)),
    (('Posterize', 0.4, 6), ('AutoContrast', 0.4, 7)),
    (('Solarize', 0.6, 8), ('Color', 0.6, 9)),
    (('Solarize', 0.2, 4), ('Rotate', 0.8, 9)),
    (('Rotate', 1.0, 7), ('TranslateY', 0.8, 9)),
    (('ShearX', 0.0, 0), ('Solarize', 0.8, 4)),
    (('ShearY', 0.8, 0), ('Color', 0.6, 4)),
    (('Color', 1.0, 0), ('Rotate', 0.6, 2)),
    (('Equalize', 0.8, 4), ('Equalize', 0.0, 8)),
    (('Equalize', 1.0, 4), ('AutoContrast', 0.6, 2)),
    (('ShearY', 0.4, 7), ('SolarizeAdd', 0.6, 7)),
    (('Posterize', 0.8, 2), ('Solarize', 0.6, 10)),
    (('Solarize', 0.6, 8), ('Equalize', 0.6, 1)),
    (('Color', 0.8, 6), ('Rotate', 0.4, 5)),
)
POLICIES = {'v0': POLICY_V0}

# distort_image_with_autoaugment's `augmentation_hparams`.
AUTOAUGMENT_CONSTANTS = randaugment.OpConstants(translate=250.0, cutout=100)
_MODE = 'tf'  # The reference's op functions, as RandAugment's tf mode runs them.


def _policy(name: str) -> tuple:
    if name not in POLICIES:
        raise ValueError(f'unknown AutoAugment policy {name!r}; valid: {", ".join(POLICIES)}')
    return POLICIES[name]


class PolicyPlan(NamedTuple):
    """AutoAugment's random choices for one image."""

    sub_policy: tf.Tensor  # int32 [], index into the policy.
    apply: tf.Tensor  # bool [S], whether step s of the chosen sub-policy fires.
    op_seed: tf.Tensor  # [S, 2], the seed `randaugment.apply_op` gets at step s.


def sample_plan(seed: tf.Tensor, policy: str = 'v0') -> PolicyPlan:
    """Draws the sub-policy and each step's apply flag from `seed` (stateless)."""
    sub_policies = _policy(policy)
    steps = max(len(sub_policy) for sub_policy in sub_policies)
    # Probabilities as a [sub-policies, steps] table; a missing step has p = 0.
    probs = tf.constant([[prob for _, prob, _ in sub_policy] + [0.0] * (steps - len(sub_policy))
                         for sub_policy in sub_policies], tf.float32)
    select, coins, ops = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    sub_policy = tf.random.stateless_uniform([], select, 0, len(sub_policies), tf.int32)
    # u < p fires with probability p, as the reference's floor(u + p) does.
    apply = tf.random.stateless_uniform([steps], coins) < probs[sub_policy]
    return PolicyPlan(sub_policy, apply, tf.random.experimental.stateless_split(ops, steps))


def autoaugment(image: tf.Tensor, seed: tf.Tensor, policy: str = 'v0') -> tf.Tensor:
    """AutoAugment `policy` of a uint8 H x W x C image; same seed, same output.

    Args:
      image: uint8 H x W x C, C = 3 or 1 (static).
      seed: shape-[2] integer tensor for the stateless random ops.
      policy: a name from POLICIES.

    Returns:
      The augmented uint8 image, same shape.
    """
    sub_policies = _policy(policy)
    image = randaugment.check_image(image)
    plan = sample_plan(seed, policy)
    for step in range(plan.apply.shape[0]):
        # One switch per step over the distinct ops at that step, plus a last branch that leaves
        # the image alone when the coin says no. Distinct means distinct arguments: Equalize
        # ignores its level, so its 6 entries at step 0 are one branch (a tf.data iterator
        # instantiates every branch when it starts).
        levels = {}  # (op, its arguments) -> one level that gives them, in first-seen order.
        branch_of = []  # Sub-policy -> its branch at this step; -1: no op at this step.
        for sub_policy in sub_policies:
            if step >= len(sub_policy):
                branch_of.append(-1)
                continue
            name, _, level = sub_policy[step]
            key = (name, randaugment.level_to_args(name, level, _MODE, AUTOAUGMENT_CONSTANTS))
            levels.setdefault(key, level)
            branch_of.append(list(levels).index(key))
        branches = [functools.partial(randaugment.apply_op, name, image, level,
                                      plan.op_seed[step], _MODE, AUTOAUGMENT_CONSTANTS)
                    for (name, _), level in levels.items()]
        branches.append(functools.partial(tf.identity, image))
        branch = tf.constant(branch_of, tf.int32)[plan.sub_policy]
        # A sub-policy without this step has p = 0 there (sample_plan), so it never fires.
        chosen = tf.where(plan.apply[step], branch, len(levels))
        image = tf.ensure_shape(tf.switch_case(chosen, branches), image.shape)
    return image
