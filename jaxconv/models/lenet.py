"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition", Fig. 2 and Section II.B).

C1 6@5x5 -> S2 2x2/2 -> C3 16@5x5 -> S4 2x2/2 -> C5 120@5x5 -> F6 84 -> output, on 32x32 input:
the [CONV-POOL-CONV-POOL-FC-FC] of the CS231n case study, where C5 is the first FC layer
(a 5x5 convolution over a 5x5 map is a fully connected layer, so it is written as one).

Two documented departures from the paper, as in every modern reimplementation:
C3 connects to all six S2 maps (the paper's Table I connection scheme gives 1,516 parameters,
we have 2,416), and the output layer is a linear layer feeding softmax instead of Euclidean RBF
units. Subsampling is plain average pooling (the paper's S-layers also learn one gain and bias per
map); activation and pooling kind are fields, so the ReLU/max-pool variant is one override away.
Parameters at 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
"""

import functools

import flax.linen as nn
import jax

from jaxconv.models.base import ConvNet
from jaxconv.models.layers import check_min_input, get_activation, pool2d
from jaxconv.models.registry import register_variants


class LeNet5(ConvNet):
    """LeNet-5; `activation`, `pooling`: the paper's (tanh, avg) or the modern (relu, max).

    `dropout_rate` (0: the paper has none) acts on F6's outputs, like every family's head dropout.
    """

    activation: str = 'tanh'
    pooling: str = 'avg'

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 32)
        act = get_activation(self.activation)
        conv = functools.partial(nn.Conv, kernel_size=(5, 5), padding='VALID', dtype=self.dtype)
        dense = functools.partial(nn.Dense, dtype=self.dtype)
        x = act(conv(6, name='c1')(x.astype(self.dtype)))
        x = pool2d(self.pooling, x, window=2, stride=2)
        x = act(conv(16, name='c3')(x))
        x = pool2d(self.pooling, x, window=2, stride=2)
        x = x.reshape(x.shape[0], -1)  # 5x5x16 at 32x32 input.
        x = act(dense(120, name='c5')(x))
        x = act(dense(84, name='f6')(x))
        return self.classify(x, train, name='output')


register_variants(LeNet5, {'lenet5': dict(default_image_size=32)})  # The input it was made for.
