"""Logits parity with the reference libraries: build the reference with random weights (no
download), move its weights into the jaxconv model through `jaxconv.convert`, compare logits.

Every BatchNorm of the reference gets random scale, offset and running statistics first: with
the libraries' initial values (scale 1 or 0, mean 0, var 1) a wrong mapping of BN leaves, or a
zero-initialised residual branch, would go unnoticed. The parity functions then rescale each
BatchNorm's running statistics to the size of its actual input on the test images
(`calibrate_*_batch_norm`). Without that, random weights shrink the activations layer by layer
until the BN offsets alone decide the logits: Xception with every max-pool window one pixel off
(PyTorch's padding under Keras' weights, 75x75 input) matched Keras to 2e-7; calibrated, 5e-2.

Conv and linear weights keep the library's init, except with `he_init=True`: torchvision's
GoogLeNet and Inception v3 draw truncated normals of std 0.01 and 0.1, under which the logits
hardly depend on the convolutions (a wrong pool window changed GoogLeNet's by less than 1e-4);
He-normal weights (std sqrt(2 / fan-in)) let every layer reach them.
"""

import functools
import os
import tempfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.convert import Layout, get_layout
from jaxconv.convert.files import convert_file
from jaxconv.torch_support import import_torch

NUM_CLASSES = 10


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|: the parity measure, 1e-4 in float32."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def compile_cheaply(function, *args):
    """`jax.jit(function)` compiled for `args` at XLA's cheap optimisation level: compiling a
    cell-based network (NASNet's thousands of ops) costs more than running it at test sizes."""
    return jax.jit(function).lower(*args).compile(compiler_options={
        'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})


def eval_logits(model, variables, images: np.ndarray) -> np.ndarray:
    """jaxconv's eval-mode logits, compiled once, cheaply."""
    forward = compile_cheaply(lambda v, x: model.apply(v, x, train=False), variables, images)
    return np.asarray(forward(variables, images))


def torch_reference(library: str, reference: str, seed: int = 0, he_init: bool = False,
                    **kwargs):
    """The library's model in eval mode with random weights and randomised BatchNorm state."""
    torch, torchvision, timm = import_torch()
    torch.manual_seed(seed)
    if library == 'timm':
        module = timm.create_model(reference, pretrained=False, num_classes=NUM_CLASSES, **kwargs)
    else:
        module = torchvision.models.get_model(reference, weights=None, num_classes=NUM_CLASSES,
                                              **kwargs)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in module.modules():
            if he_init and isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                for tensor, low, high in ((layer.weight, 0.5, 1.5), (layer.bias, -0.2, 0.2),
                                          (layer.running_mean, -0.2, 0.2),
                                          (layer.running_var, 0.5, 1.5)):
                    if tensor is not None:
                        tensor.copy_(low + (high - low) * torch.rand(tensor.shape,
                                                                     generator=generator))
    return module.eval()


def calibrated_statistics(second_moment: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Running (mean, variance) of a BN whose input channels have these mean squares on the test
    images: the ranges of `torch_reference`, U(-0.2, 0.2) and U(0.5, 1.5), in units of the layer's
    input scale s = sqrt(mean square over channels), so activations stay near unit size. Not the
    channels' own mean and variance: over two images a deep channel's spread is the difference
    of two close numbers, and dividing by it turns float32 rounding into chaos."""
    scale = float(np.mean(second_moment))
    mean = rng.uniform(-0.2, 0.2, second_moment.shape) * np.sqrt(scale)
    variance = rng.uniform(0.5, 1.5, second_moment.shape) * scale
    return mean.astype(np.float32), variance.astype(np.float32)


def calibrate_torch_batch_norm(module, images, seed: int = 0) -> None:
    """Sets every BatchNorm's running statistics from its input on `images` (NCHW; see
    `calibrated_statistics`), layer by layer in one eval-mode pass."""
    torch, _, _ = import_torch()
    rng = np.random.default_rng(seed)

    def use_input_statistics(layer, inputs):
        x = inputs[0]
        axes = [axis for axis in range(x.ndim) if axis != 1]
        mean, var = calibrated_statistics(x.square().mean(axes).numpy(), rng)
        layer.running_mean.copy_(torch.from_numpy(mean))
        layer.running_var.copy_(torch.from_numpy(var))

    hooks = [layer.register_forward_pre_hook(use_input_statistics) for layer in module.modules()
             if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
             and layer.running_mean is not None]
    with torch.no_grad():
        module(images)
    for hook in hooks:
        hook.remove()


def jaxconv_twin(library: str, reference: str, module, resolution: int, **model_kwargs):
    """(model, variables) of the jaxconv model holding `module`'s weights, through the
    converter's file path: the state_dict saved with `torch.save`, read back and converted as
    `python -m jaxconv.convert` does (classes read off the file)."""
    del resolution  # Parameter shapes of the torch layouts do not depend on it.
    torch, _, _ = import_torch()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f'{reference}.pth')
        torch.save(module.state_dict(), path)
        converted = convert_file(get_layout(library, reference), path, describe=False,
                                 **model_kwargs)
    assert converted.info['num_classes'] == NUM_CLASSES, converted.info
    return converted.model, converted.variables


def random_images(resolution: int, batch: int = 2) -> np.ndarray:
    images = np.random.default_rng(0).normal(size=(batch, resolution, resolution, 3))
    return images.astype(np.float32)


def reference_outputs(module, images: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
    """{'logits': ..., and in train mode 'aux_logits1', 'aux_logits2' / 'aux_logits'} of a torch
    model; train mode normalises with batch statistics (set its dropout rates to 0 to compare)."""
    torch, _, _ = import_torch()
    module.train(train)
    with torch.no_grad():
        out = module(torch.from_numpy(images.transpose(0, 3, 1, 2)))
    if not isinstance(out, tuple):
        return {'logits': out.numpy()}
    return {name: getattr(out, name).numpy() for name in out._fields}


@functools.partial(jax.jit, static_argnames=('model', 'train'),
                   compiler_options={'xla_backend_optimization_level': 0})
def _forward(model, variables, images, train: bool):
    """One compile of the whole forward pass: on CPU far cheaper than running a deep net op by
    op (DenseNet-121: 5 s against 26 s); LLVM optimisation level 0 changes no float operation."""
    if not train:
        return model.apply(variables, images, train=False), {}
    return model.apply(variables, images, train=True, mutable=['batch_stats', 'intermediates'])


def jaxconv_outputs(model, variables, images: np.ndarray,
                    train: bool = False) -> dict[str, np.ndarray]:
    """The same dict from a jaxconv model: its sown aux logits in order (aux1 first)."""
    logits, state = _forward(model, variables, jnp.asarray(images), train)
    outputs = {'logits': np.asarray(logits)}
    aux = state.get('intermediates', {}).get('aux_logits', ())
    names = ['aux_logits'] if len(aux) == 1 else [f'aux_logits{i + 1}' for i in range(len(aux))]
    outputs.update({name: np.asarray(a) for name, a in zip(names, aux, strict=True)})
    return outputs


def torch_parity_errors(library: str, reference: str, resolution: int = 64, batch: int = 2,
                        reference_kwargs: dict | None = None, train: bool = False,
                        he_init: bool = False, **model_kwargs) -> dict[str, float]:
    """Relative error of each output (logits, and aux logits in train mode) of jaxconv against
    the reference, same weights; a missing or extra output fails the comparison."""
    torch, _, _ = import_torch()
    module = torch_reference(library, reference, he_init=he_init, **(reference_kwargs or {}))
    images = random_images(resolution, batch)
    calibrate_torch_batch_norm(module, torch.from_numpy(images.transpose(0, 3, 1, 2)))
    model, variables = jaxconv_twin(library, reference, module, resolution, **model_kwargs)
    expected = reference_outputs(module, images, train)
    actual = jaxconv_outputs(model, variables, images, train)
    assert sorted(actual) == sorted(expected), (sorted(actual), sorted(expected))
    return {name: relative_error(actual[name], expected[name]) for name in expected}


def torch_parity(library: str, reference: str, resolution: int = 64, batch: int = 2,
                 reference_kwargs: dict | None = None, he_init: bool = False,
                 **model_kwargs) -> float:
    """Relative error of jaxconv's eval-mode logits against the reference's, same weights."""
    return torch_parity_errors(library, reference, resolution, batch, reference_kwargs,
                               he_init=he_init, **model_kwargs)['logits']


def keras_reference(application: str | Callable, resolution: int, seed: int = 0, **kwargs):
    """`keras.applications.<application>` (or the builder `application`) with random weights,
    logits out, and randomised BatchNorm state; input (resolution, resolution, 3)."""
    import keras

    # Layers Keras does not name are numbered per session (conv2d, conv2d_1, ...): start from 0 so
    # that the layouts can name them.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    builder = application if callable(application) else getattr(keras.applications, application)
    model = builder(weights=None, input_shape=(resolution, resolution, 3),
                    classes=NUM_CLASSES, classifier_activation=None, **kwargs)
    rng = np.random.default_rng(seed + 1)
    ranges = {'gamma': (0.5, 1.5), 'beta': (-0.2, 0.2), 'moving_mean': (-0.2, 0.2),
              'moving_variance': (0.5, 1.5)}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                low, high = ranges[weight.path.rsplit('/', 1)[-1]]
                weight.assign(rng.uniform(low, high, weight.shape).astype(np.float32))
    return model


def calibrate_keras_batch_norm(model, images: np.ndarray, seed: int = 0) -> None:
    """Sets every BatchNorm's moving statistics from its input on `images` (see
    `calibrated_statistics`), layer by layer in one eval-mode pass, as `calibrate_torch_batch_norm`:
    each layer's `call` is wrapped for the pass to set its statistics before it normalises.
    (Statistics recorded in a training-mode pass describe a network that eval mode never runs:
    EfficientNet's activations then grew to 1e4 by the last block, and float32 rounding to a
    relative error of 1e-3.)"""
    import keras

    rng = np.random.default_rng(seed)
    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)]

    def use_input_statistics(layer):
        normalise = layer.call

        def call(inputs, *args, **kwargs):
            x = np.asarray(inputs)
            mean, var = calibrated_statistics(np.square(x).mean(tuple(range(x.ndim - 1))), rng)
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
            return normalise(inputs, *args, **kwargs)

        return call

    for layer in layers:
        layer.call = use_input_statistics(layer)
    try:
        model(images, training=False)
    finally:
        for layer in layers:
            del layer.call


def keras_parity(application: str | Callable, resolution: int, batch: int = 2,
                 reference_kwargs: dict | None = None, layout: Layout | None = None,
                 **model_kwargs) -> float:
    """Relative error of jaxconv's eval-mode logits against Keras', same weights. A builder
    in place of an application name comes with its `layout`."""
    reference = keras_reference(application, resolution, **(reference_kwargs or {}))
    images = np.random.default_rng(0).normal(size=(batch, resolution, resolution, 3))
    images = images.astype(np.float32)
    calibrate_keras_batch_norm(reference, images)
    layout = layout or get_layout('keras', application)
    # Through the converter's file path: the weights saved as Keras saves them, read back into a
    # freshly built application and converted as `python -m jaxconv.convert` does.
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'reference.weights.h5')
        reference.save_weights(path)
        converted = convert_file(
            layout, path, num_classes=NUM_CLASSES, image_size=resolution,
            keras_kwargs=reference_kwargs, describe=False,
            keras_application=application if callable(application) else None, **model_kwargs)
    model, variables = converted.model, converted.variables
    expected = np.asarray(reference(images, training=False))
    return relative_error(eval_logits(model, variables, images), expected)
