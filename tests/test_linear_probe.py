"""Linear probe on a network's features (jaxconv.linear_probe)."""

import jax
import numpy as np

from jaxconv import digits_transfer, linear_probe, models


def test_probe_separates_digits_on_random_features_and_not_on_shuffled_labels():
    """Random LeNet-5 features of the digits are close to linearly separable (a random-feature
    model: well above 90%), while the same probe on permuted train labels stays near chance
    (0.1): the probe measures the features, not memorisation of the test set."""
    data = digits_transfer.load_digits_split()
    model = models.create_model('lenet5', num_classes=10)
    variables = model.init(jax.random.key(0), data['test'][0][:1], train=False)
    train_x = linear_probe.extract(model, variables, data['train'][0])
    test_x = linear_probe.extract(model, variables, data['test'][0])
    assert train_x.shape == (len(data['train'][1]), 84)  # F6's outputs: the classifier's input.
    result = linear_probe.probe(train_x, data['train'][1], test_x, data['test'][1])
    assert result['test_top1'] > 0.9, result
    shuffled = np.random.default_rng(0).permutation(data['train'][1])
    assert linear_probe.probe(train_x, shuffled, test_x, data['test'][1])['test_top1'] < 0.25
