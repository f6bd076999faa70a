"""A minival held out of the train split: disjoint from what trains, the only split read during
training, and the test split read once at the end; the summary says where each number is from
and what the run cost."""

import json

import pytest
import tensorflow_datasets as tfds

from configs import common
from jaxconv.data import pipeline
from jaxconv.train import loop


@pytest.fixture
def digits_dataset(digits_dir):
    config = common.get_config()
    config.dataset.data_dir = digits_dir
    return config.dataset, pipeline.get_builder(config.dataset)


def _ids(builder, split):
    return [int(x['id']) for x in tfds.as_numpy(builder.as_dataset(split=split))]


def test_minival_and_train_share_no_example(digits_dataset):
    cfg, builder = digits_dataset
    cfg.minival_fraction = 0.1
    splits = pipeline.data_splits(builder, cfg)
    train, minival = _ids(builder, splits.train), _ids(builder, splits.minival)
    # digits' train split is 1,438 images (every fifth of the 1,797 is test): 10% is 144.
    assert (len(train), len(minival)) == (1294, 144)
    assert not set(train) & set(minival)
    assert sorted(train + minival) == sorted(_ids(builder, 'train'))
    assert pipeline.dataset_meta(builder, cfg).num_train_examples == 1294  # What trains.
    assert pipeline.data_splits(builder, cfg) == splits  # The same carve every time.
    cfg.train_split = 'train[:50%]'  # A carve of a slice stays inside the slice.
    assert pipeline.data_splits(builder, cfg).minival == 'train[647:719]'


@pytest.mark.parametrize('fraction, split, message', [
    (1.5, 'train', 'must be in'),
    (0.1, 'train[:10]+train[20:30]', 'one contiguous dataset.train_split'),
    (0.0001, 'train', 'leaves 0 for minival'),
])
def test_bad_minival_settings_name_the_fix(digits_dataset, fraction, split, message):
    cfg, builder = digits_dataset
    cfg.minival_fraction, cfg.train_split = fraction, split
    with pytest.raises(pipeline.DataError, match=message):
        pipeline.data_splits(builder, cfg)


def test_test_split_is_read_once_after_every_selection(digits_config, tmp_path):
    """From the run's own metrics.jsonl: every eval during training read minival, the test split
    was read once, last; the summary's best is minival's best and its final is the test read."""
    config = digits_config
    config.train.steps, config.train.eval_every, config.train.log_every = 30, 10, 5
    config.dataset.minival_fraction = 0.1
    summary = loop.train_and_evaluate(config, str(tmp_path))
    lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
    evals = [record for record in map(json.loads, lines) if record['split'] == 'eval']
    minival, test = summary['splits']['minival'], summary['splits']['test']
    assert (minival, test) == ('train[1294:1438]', 'test')
    assert [(r['step'], r['dataset_split']) for r in evals] == [
        (10, minival), (20, minival), (30, minival), (30, test)]
    assert json.loads(lines[-1])['dataset_split'] == test  # Nothing was written after it.
    assert summary['final_top1'] == evals[-1]['top1']
    assert summary['minival_top1'] == evals[-2]['top1']
    assert summary['best_top1'] == max(r['top1'] for r in evals[:3])
    assert summary['metrics_from'] == {'final_*': 'test', 'best_*': 'minival',
                                       'minival_*': 'minival'}
    # Cost: LeNet-5 at 32x32, counted by hand: conv1 28*28*6*25 = 117,600; conv2 10*10*16*150 =
    # 240,000; fc 400*120 + 120*84 + 84*10 = 58,920; and the published 61,706 parameters.
    assert (summary['macs'], summary['params']) == (416_520, 61_706)
    assert (summary['resolution'], summary['depth_multiplier'], summary['width_multiplier']) == (
        32, 1.0, 1.0)
    # Images per second times seconds per step is images per step: the global batch.
    assert summary['img_per_sec'] * summary['ms_per_step'] / 1000 == pytest.approx(64)
