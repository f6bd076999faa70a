"""torchvision's VGG (with and without BatchNorm): jaxconv names every layer by its torchvision
index (`features_<i>`, `classifier_<i>`), so paths map by `dotted`; the first FC reads the 7x7x512
map of the adaptive pool, which torchvision flattens CHW."""

from jaxconv.convert.layouts import Layout, chw_rows, dotted, register_layout
from jaxconv.models.vgg import VGG_LAYERS


def _torchvision(path: str):
    if path == 'classifier_0':
        return dotted(path), chw_rows(512, 7, 7)
    return dotted(path)


for _name in ('vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn'):
    register_layout(Layout('torchvision', _name, _name, _torchvision))


def _keras_names(layers) -> dict[str, str]:
    """torchvision's index name of each conv -> Keras' `block<stage>_conv<k>` (no BatchNorm)."""
    names, index, stage, k = {}, 0, 1, 0
    for layer in layers:
        if layer == 'M':
            index, stage, k = index + 1, stage + 1, 0
        else:
            k += 1
            names[f'features_{index}'] = f'block{stage}_conv{k}'
            index += 2  # The conv and its ReLU.
    return names | {'classifier_0': 'fc1', 'classifier_3': 'fc2', 'classifier_6': 'predictions'}


for _keras, _config in (('VGG16', 'D'), ('VGG19', 'E')):
    register_layout(Layout('keras', _keras, f'keras_{_keras.lower()}',
                           _keras_names(VGG_LAYERS[_config]).__getitem__))
