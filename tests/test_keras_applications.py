"""The Keras layouts of the existing families and the Keras Applications table.

- Parameters: every row of the Keras Applications table as issue 12 lists it (Keras' convention:
  BatchNorm moving statistics and EfficientNet's input Normalization included), read from the
  output of `python -m jaxconv.models.keras_table`.
- Logits against `keras.applications` (weights=None, random weights, calibrated BatchNorm; see
  parity.py) at the smallest input each accepts. One depth per layout: ResNet101/152,
  ResNet101V2/152V2, DenseNet169/201 and EfficientNetB1-B7 differ from the tested ResNet50,
  ResNet50V2, DenseNet121 and EfficientNetB0 only in repeat counts and widths, which the
  parameter counts check; their layouts are the same functions.
- Multiply-adds of Keras' ResNets (the original v1) against He et al. 2015 Table 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import NUM_CLASSES, compile_cheaply, keras_parity

from jaxconv.convert import get_layout
from jaxconv.models import create_model, keras_table
from jaxconv.models.flops import count_macs

# Issue 12's table (the course deck's Keras Applications table), parameters column.
ISSUE_TABLE = {
    'Xception': 22_910_480, 'VGG16': 138_357_544, 'VGG19': 143_667_240,
    'ResNet50': 25_636_712, 'ResNet101': 44_707_176, 'ResNet152': 60_419_944,
    'ResNet50V2': 25_613_800, 'ResNet101V2': 44_675_560, 'ResNet152V2': 60_380_648,
    'InceptionV3': 23_851_784, 'InceptionResNetV2': 55_873_736, 'MobileNet': 4_253_864,
    'MobileNetV2': 3_538_984, 'DenseNet121': 8_062_504, 'DenseNet169': 14_307_880,
    'DenseNet201': 20_242_984, 'NASNetMobile': 5_326_716, 'NASNetLarge': 88_949_818,
    'EfficientNetB0': 5_330_571, 'EfficientNetB1': 7_856_239, 'EfficientNetB2': 9_177_569,
    'EfficientNetB3': 12_320_535, 'EfficientNetB4': 19_466_823, 'EfficientNetB5': 30_562_527,
    'EfficientNetB6': 43_265_143, 'EfficientNetB7': 66_658_687,
}


def test_table_command_reproduces_the_parameters_of_every_row(capsys):
    assert keras_table.main(['--no-macs']) == 0
    rows = [line.split('|')[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith('| ') and not line.startswith('| Keras model')]
    printed = {cells[0].strip(): int(cells[2].replace(',', '')) for cells in rows}
    assert printed == ISSUE_TABLE
    for cells in rows:  # Registered as keras_ + Keras' name in lower case.
        assert cells[1].strip() == 'keras_' + cells[0].strip().lower()
        assert '%' in cells[6] and '%' in cells[7]  # The published figures are there.


def test_table_command_rejects_an_unknown_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        keras_table.main(['--bogus'])
    assert exit_info.value.code != 0
    assert 'unrecognized arguments: --bogus' in capsys.readouterr().err


@pytest.mark.parametrize('name,paper_macs', [('keras_resnet50', 3.8e9),
                                             ('keras_resnet152', 11.3e9)])
def test_keras_resnets_are_the_papers_v1(name, paper_macs):
    """He et al. 2015 Table 1: 3.8 and 11.3 GFLOPs (multiply-adds), stride on the first 1x1;
    torchvision's v1.5 (stride on the 3x3) costs 4.1 G for ResNet-50."""
    assert count_macs(create_model(name), 224) == pytest.approx(paper_macs, rel=0.02)


def _efficientnet_b0_with_adapted_normalization(**kwargs):
    """Keras' EfficientNetB0 whose input Normalization has a random mean and variance (with the
    defaults, 0 and 1, a mis-mapped layer would go unnoticed)."""
    import keras

    model = keras.applications.EfficientNetB0(**kwargs)
    norm = model.get_layer('normalization')
    rng = np.random.default_rng(7)
    norm.adapt_mean.assign(rng.uniform(-0.5, 0.5, 3).astype(np.float32) / 255)
    norm.adapt_variance.assign((rng.uniform(0.5, 1.5, 3).astype(np.float32) / 255) ** 2)
    norm.finalize_state()  # Normalization reads its mean and variance from here.
    return model


@pytest.mark.parametrize('application,resolution', [
    ('VGG16', 32), ('ResNet50', 32), ('ResNet50V2', 32), ('InceptionV3', 75),
    ('MobileNet', 32), ('MobileNetV2', 32), ('DenseNet121', 32),
    # 48 -> 24 -> 12 -> 6 -> 3: the last strided depthwise conv pads an odd map.
    ('MobileNet', 48)])
def test_logits_match_keras(application, resolution):
    assert get_layout('keras', application).model == f'keras_{application.lower()}'
    assert keras_parity(application, resolution) <= 1e-4


def test_logits_match_keras_efficientnetb0():
    layout = get_layout('keras', 'EfficientNetB0')
    assert keras_parity(_efficientnet_b0_with_adapted_normalization, 32, layout=layout) <= 1e-4


# Small networks with the Keras switches of the full ones: two blocks in each of two stages
# (the second block of a stage downsamples, with a subsampled identity), one EfficientNet stage.
TINY = {'keras_resnet50v2': dict(stage_depths=(2, 2), stage_widths=(8, 16)),
        'keras_efficientnetb0': dict(stages=((1, 3, 1, 1, 16), (2, 3, 2, 6, 24)))}


@pytest.mark.parametrize('name', sorted(TINY))
def test_train_mode_updates_batch_norm_only(name):
    model = create_model(name, num_classes=NUM_CLASSES, **TINY[name])
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    keys = {'params': jax.random.key(0), 'dropout': jax.random.key(1),
            'drop_path': jax.random.key(2)}

    def init_and_train(x):
        variables = model.init(keys, x, train=False)
        return variables, *model.apply(variables, x, train=True, rngs=keys,
                                       mutable=['batch_stats'])

    variables, logits, state = compile_cheaply(init_and_train, images)(images)
    assert logits.shape == (2, NUM_CLASSES) and bool(jnp.all(jnp.isfinite(logits)))
    after = dict(jax.tree.leaves_with_path(state['batch_stats']))
    for path, value in jax.tree.leaves_with_path(variables['batch_stats']):
        changed = not np.array_equal(value, after[path])
        # BatchNorm statistics move; Keras' input Normalization is a constant of the model.
        assert changed == ('input_normalization' not in jax.tree_util.keystr(path)), path
