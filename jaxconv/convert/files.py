"""Converting a weights file of timm, torchvision or Keras into a jaxconv checkpoint directory.

`convert_file` is the whole conversion the CLI (`python -m jaxconv.convert`) runs and the
logits-parity tests go through: read the file safely, build the jaxconv model of the layout with
as many classes as the file's classifier has, move every weight over (`transplant`), and describe
the eval preprocessing the weights expect. `save_converted` writes the result:

  DIR/checkpoint/   Orbax PyTree of {'params': ..., 'batch_stats': ...}
  DIR/convert.json  source, layout, model name and kwargs, num_classes, eval preprocessing

Files are read without unpickling arbitrary objects: PyTorch files with
`torch.load(weights_only=True)` or safetensors; Keras `.weights.h5` by building
`keras.applications.<NAME>(weights=None)` and loading the weights into it, `.keras` with
`keras.saving.load_model(safe_mode=True)`.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv import models
from jaxconv.convert.core import flatten, keras_state, transplant
from jaxconv.convert.layouts import LIBRARIES, Layout, get_layout

CHECKPOINT_DIR = 'checkpoint'
CONVERT_JSON = 'convert.json'
TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.ckpt')
KERAS_SUFFIXES = ('.weights.h5', '.keras')
# Wrappers that training scripts put around a state_dict (timm's train.py saves 'state_dict').
_STATE_DICT_KEYS = ('state_dict', 'model', 'state_dict_ema')

# keras.applications' `preprocess_input` modes (keras/src/applications/imagenet_utils.py), in
# jaxconv's convention: per-channel (mean, std) in 0..255 units and the channel order.
_KERAS_MODES = {
    'caffe': {'mean': [103.939, 116.779, 123.68], 'std': [1.0, 1.0, 1.0], 'channels': 'BGR'},
    'tf': {'mean': [127.5] * 3, 'std': [127.5] * 3, 'channels': 'RGB'},
    'torch': {'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375],
              'channels': 'RGB'},
    # EfficientNet (v1) rescales and normalises inside the model: it takes raw 0..255 pixels.
    'inside_model': {'mean': [0.0] * 3, 'std': [1.0] * 3, 'channels': 'RGB'},
}
_KERAS_MODULE_MODES = {'vgg16': 'caffe', 'vgg19': 'caffe', 'resnet': 'caffe', 'densenet': 'torch',
                       'efficientnet': 'inside_model'}  # Every other application: 'tf'.


class ConvertError(ValueError):
    """A bad input to the converter; the message is one line naming the fix (or a key table)."""


@dataclasses.dataclass
class Converted:
    model: Any  # The flax module, built with `info['model_kwargs']` and `info['num_classes']`.
    variables: dict  # {'params': ..., 'batch_stats': ...} as numpy arrays.
    info: dict  # What convert.json holds.


def parse_source(text: str) -> Layout:
    """'timm:resnet50' -> its registered Layout (a one-line error for an unknown one)."""
    library, sep, reference = text.partition(':')
    if not sep or library not in LIBRARIES or not reference:
        raise ConvertError(f'--from {text!r} must be LIBRARY:NAME with LIBRARY one of '
                           f'{", ".join(LIBRARIES)} (e.g. timm:resnet50, keras:ResNet50)')
    try:
        return get_layout(library, reference)
    except KeyError as error:
        raise ConvertError(error.args[0]) from None


# ---- Reading files -------------------------------------------------------------------------------

def read_torch_file(path: str) -> dict[str, np.ndarray]:
    """A PyTorch state_dict from a safetensors file or a `torch.save` file, as float32 numpy."""
    if path.endswith('.safetensors'):
        from safetensors.numpy import load_file

        return {key: np.asarray(value, np.float32) for key, value in load_file(path).items()}
    from jaxconv.torch_support import import_torch

    torch, _, _ = import_torch()
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # pickle refuses objects other than tensors and containers.
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConvertError(f'{path} is not a PyTorch weights file that loads with '
                           f'weights_only=True ({first[:160]}); save model.state_dict()') from None
    for key in _STATE_DICT_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor)
                                               for v in loaded.values()):
        raise ConvertError(f'{path} holds no state_dict (a dict of tensors); save '
                           'model.state_dict()')
    prefix = 'module.'  # DistributedDataParallel's wrapper.
    return {key.removeprefix(prefix): value.detach().float().numpy()
            for key, value in loaded.items()}


def keras_builder(reference: str):
    import keras

    builder = getattr(keras.applications, reference, None)
    if builder is None:
        raise ConvertError(f'keras.applications has no {reference!r}')
    return builder


def read_keras_file(path: str, reference: str, num_classes: int, image_size: int | None,
                    builder: Any = None, **builder_kwargs) -> tuple[dict[str, np.ndarray], Any]:
    """(weights keyed 'layer/variable', the Keras model) from a `.keras` or `.weights.h5` file.

    `.weights.h5` holds no architecture: the application is built with `num_classes` outputs at
    `image_size` (None: its default) and the weights are loaded into it; `builder` replaces
    `keras.applications.<reference>` (a builder the applications do not export, in tests).
    """
    import keras

    if path.endswith('.keras'):
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:
            raise ConvertError(f'{path} does not load as a Keras model: '
                               f'{str(error).splitlines()[0][:160]}') from None
        return keras_state(model), model
    keras.backend.clear_session()  # Unnamed layers are numbered per session; layouts name them.
    shape = None if image_size is None else (image_size, image_size, 3)
    builder = builder or keras_builder(reference)
    model = builder(weights=None, input_shape=shape, classes=num_classes,
                    classifier_activation=None, **builder_kwargs)
    try:
        model.load_weights(path)
    except Exception as error:
        raise ConvertError(f'{path} does not fit keras.applications.{reference} with '
                           f'{num_classes} classes ({str(error).splitlines()[0][:160]}); pass '
                           '--num_classes and --image_size as it was saved') from None
    return keras_state(model), model


# ---- Preprocessing the weights expect ------------------------------------------------------------

def eval_preprocessing(layout: Layout, image_size: int | None = None) -> dict:
    """mean/std (0..255 units, jaxconv's convention), resolution, crop fraction, interpolation."""
    if layout.library == 'timm':
        from jaxconv.torch_support import import_torch

        _, _, timm = import_torch()
        cfg = timm.get_pretrained_cfg(layout.reference)
        if cfg is not None:
            return {'mean': [255 * m for m in cfg.mean], 'std': [255 * s for s in cfg.std],
                    'resolution': cfg.input_size[-1], 'crop_fraction': cfg.crop_pct,
                    'interpolation': cfg.interpolation, 'channels': 'RGB',
                    'from': 'timm pretrained_cfg'}
    elif layout.library == 'torchvision':
        from jaxconv.torch_support import import_torch

        _, torchvision, _ = import_torch()
        transform = torchvision.models.get_model_weights(layout.reference).DEFAULT.transforms()
        crop, resize = transform.crop_size[0], transform.resize_size[0]
        return {'mean': [255 * m for m in transform.mean], 'std': [255 * s for s in transform.std],
                'resolution': crop, 'crop_fraction': crop / resize,
                'interpolation': transform.interpolation.value, 'channels': 'RGB',
                'from': 'torchvision weights transforms()'}
    elif layout.library == 'keras':
        module = keras_builder(layout.reference).__module__.rsplit('.', 1)[-1]
        mode = _KERAS_MODULE_MODES.get(module, 'tf')
        return {**_KERAS_MODES[mode], 'resolution': image_size, 'crop_fraction': None,
                'interpolation': 'bilinear', 'from': f'keras preprocess_input mode {mode!r}'}
    return {'from': 'unknown'}


# ---- The conversion ------------------------------------------------------------------------------

def _template(model, image_size: int):
    image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    keys = {name: jax.random.key(i) for i, name in enumerate(('params', 'dropout', 'drop_path'))}
    return jax.eval_shape(lambda: model.init(keys, image, train=True))


def head_leaves(name: str, image_size: int | None = None, **model_kwargs) -> set[str]:
    """Flat keys ('params/fc/kernel') of the leaves whose shape depends on num_classes: the
    classifier (and auxiliary classifiers). Found by building the model twice, shapes only."""
    shapes = []
    for classes in (7, 11):
        model = models.create_model(name, num_classes=classes, **model_kwargs)
        size = image_size or model.default_image_size
        shapes.append({k: v.shape for k, v in flatten(_template(model, size)).items()})
    return {key for key in shapes[0] if shapes[0][key] != shapes[1].get(key)}


def _num_classes(layout: Layout, state: dict[str, np.ndarray], image_size: int | None,
                 model_kwargs: dict) -> int:
    """The classes of the source's classifier: the length of the source bias (or the output side
    of the kernel) of a jaxconv head leaf."""
    torch = layout.framework == 'torch'
    # The class axis of each source leaf: PyTorch's weight is (out, in, ...), Keras' kernel
    # (..., in, out); a bias is (out,) in both.
    leaves = {'bias': ('bias', 0), 'kernel': ('weight', 0) if torch else ('kernel', -1)}
    for key in sorted(head_leaves(layout.model, image_size, **model_kwargs)):
        _, *module, leaf = key.split('/')
        mapped = layout.source_module('/'.join(module))
        mapped = mapped[0] if isinstance(mapped, tuple) else mapped
        if not isinstance(mapped, str) or leaf not in leaves:
            continue
        source_leaf, axis = leaves[leaf]
        array = state.get(f'{mapped}{"." if torch else "/"}{source_leaf}')
        if array is not None:
            return int(array.shape[axis])
    raise ConvertError(f'cannot find the classifier of {layout.library}:{layout.reference} in '
                       'the file; pass --num_classes')


def convert_state(layout: Layout, state: dict[str, np.ndarray], *, num_classes: int | None = None,
                  image_size: int | None = None, **model_kwargs) -> Converted:
    """The jaxconv model and variables holding `state` (a flat source state) through `layout`."""
    kwargs = {**layout.model_kwargs, **model_kwargs}
    if num_classes is None:
        num_classes = _num_classes(layout, state, image_size, kwargs)
    model = models.create_model(layout.model, num_classes=num_classes, **kwargs)
    size = image_size or model.default_image_size
    variables = transplant(_template(model, size), state, layout.source_module, layout.framework)
    info = {'source': f'{layout.library}:{layout.reference}', 'layout': layout.framework,
            'model': layout.model, 'model_kwargs': kwargs, 'num_classes': num_classes,
            'image_size': size}
    return Converted(model, variables, info)


def convert_file(layout: Layout, checkpoint: str, *, num_classes: int | None = None,
                 image_size: int | None = None, keras_kwargs: dict | None = None,
                 keras_application: Any = None, describe: bool = True,
                 **model_kwargs) -> Converted:
    """Reads `checkpoint` as `layout`'s library writes it and converts it (see the module doc).

    Keras needs `num_classes` (default 1000) and `image_size` to rebuild a `.weights.h5` model;
    `keras_kwargs` go to its builder (`keras_application`, default the layout's reference).
    `describe=False` skips the preprocessing lookup.
    """
    if not os.path.isfile(checkpoint):
        raise ConvertError(f'--checkpoint {checkpoint} is not a file')
    suffixes = TORCH_SUFFIXES if layout.framework == 'torch' else KERAS_SUFFIXES
    if not checkpoint.endswith(suffixes):
        raise ConvertError(f'{checkpoint}: a {layout.library} weights file ends in '
                           f'{" or ".join(suffixes)}')
    checkpoint_info = {'checkpoint': os.path.abspath(checkpoint)}
    if layout.framework == 'torch':
        state = read_torch_file(checkpoint)
    else:
        state, _ = read_keras_file(checkpoint, layout.reference, num_classes or 1000, image_size,
                                   keras_application, **(keras_kwargs or {}))
        num_classes = num_classes or 1000
    converted = convert_state(layout, state, num_classes=num_classes, image_size=image_size,
                              **model_kwargs)
    converted.info.update(checkpoint_info)
    if describe:
        converted.info['eval_preprocessing'] = eval_preprocessing(layout, converted.info[
            'image_size'])
    return converted


def save_converted(out: str, converted: Converted) -> None:
    """DIR/checkpoint (Orbax: params, batch_stats) and DIR/convert.json; refuses a non-empty DIR."""
    import orbax.checkpoint as ocp

    if os.path.exists(out) and os.listdir(out):
        raise ConvertError(f'--out {out} is not empty; choose a new directory')
    os.makedirs(out, exist_ok=True)
    tree = {'params': converted.variables['params'],
            'batch_stats': converted.variables.get('batch_stats', {})}
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(os.path.abspath(os.path.join(out, CHECKPOINT_DIR)), tree)
    with open(os.path.join(out, CONVERT_JSON), 'w') as f:
        json.dump(converted.info, f, indent=2, sort_keys=True)


def is_converted(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONVERT_JSON))


def load_converted(path: str, target: dict) -> dict:
    """{'params', 'batch_stats'} of a converted DIR, restored as `target` (ShapeDtypeStructs)."""
    import orbax.checkpoint as ocp

    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(
            os.path.abspath(os.path.join(path, CHECKPOINT_DIR)),
            args=ocp.args.PyTreeRestore(
                item=target, partial_restore=True,
                restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
