"""The model report: course-style layer tables read off a traced forward pass, for any family."""

import math

import jax
import pytest

from jaxconv import models
from jaxconv.models import report


def test_alexnet_table_matches_the_paper_layer_by_layer():
    text = report.report('alexnet')
    lines = text.splitlines()
    assert lines[0] == 'alexnet on 227x227x3 input, 1000 classes'
    conv1 = next(line.split() for line in lines if line.startswith('conv1 '))
    assert conv1 == ['conv1', 'Conv', '55x55x96', '11x11/4', '34,944']
    conv2 = next(line for line in lines if line.startswith('conv2 '))
    assert 'Conv g2' in conv2 and '27x27x256' in conv2 and '307,456' in conv2  # Two towers.
    kinds = [line.split()[1] for line in lines[3:] if line.startswith(('lrn', 'pool'))]
    assert kinds == ['LRN', 'MaxPool', 'LRN', 'MaxPool', 'MaxPool']
    assert any(line.split()[:3] == ['pool', 'MaxPool', '6x6x256'] for line in lines)
    assert 'total params: 60,965,224' in text
    assert 'analytic count of conv and dense layers' in text


def test_torchvision_alexnet_multiply_adds_match_the_reference():
    text = report.report('alexnet_tv')
    assert 'total params: 61,100,840' in text
    assert 'multiply-adds: 714,188,480 ' in text  # torchvision's 0.714 GFLOPS (params.md).


def test_googlenet_table_accounts_for_the_training_only_heads():
    text = report.report('googlenet')
    assert 'inception3a/concat' in text and '28x28x256' in text
    assert 'total params: 13,004,888' in text
    assert 'of which 6,379,984 in layers that run only in training' in text
    assert 'multiply-adds: 1,498,376,192 ' in text  # torchvision googlenet, 1.498 GMACs.


@pytest.mark.parametrize('name,resolution,channels', [
    ('lenet5', 32, 1), ('squeezenet1_1', 64, 3), ('mobilenet_v2', 64, 3), ('vgg11_bn', 32, 3),
    ('fractalnet20', 32, 3), ('resnet18', 64, 3),
])
def test_rows_account_for_every_parameter(name, resolution, channels):
    model = models.create_model(name, num_classes=10)
    rows, params = report.layer_rows(model, resolution, channels)
    assert sum(row.params for row in rows) == sum(math.prod(x.shape)
                                                  for x in jax.tree.leaves(params))
    assert rows[-1].kind == 'Dense' or rows[-1].kind.startswith('Global')
    assert rows[-1].output == (1, 10)


def test_lenet5_on_digits():
    text = report.report('lenet5', resolution=32, num_classes=10, channels=1)
    assert 'c1      Conv     28x28x6   5x5/1             156' in text
    assert 'total params: 61,706' in text


def test_command_line(capsys):
    assert report.main(['minivgg']) == 0
    out = capsys.readouterr().out
    assert out.startswith('minivgg on 32x32x3 input') and 'total params: 2,169,770' not in out
    assert report.main(['minivgg', '--num-classes', '10']) == 0
    assert 'total params: 2,169,770' in capsys.readouterr().out
    assert report.main(['vgg16', '--resolution', '16']) == 1
    err = capsys.readouterr().err
    assert 'at least 32x32 pixels' in err and err.count('\n') == 1
    assert report.main(['vgg17']) == 1
    assert 'unknown model' in capsys.readouterr().err
