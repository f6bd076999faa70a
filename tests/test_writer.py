"""Results files and W&B: append-only metrics, summary, run identity across resumes, no secrets."""

import json
import os

import pytest

from jaxconv.train import writer


def test_wandb_mode_follows_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv('HOME', str(tmp_path))  # No ~/.netrc.
    monkeypatch.delenv('WANDB_API_KEY', raising=False)
    assert writer.resolve_wandb_mode('online') == 'offline'
    (tmp_path / '.netrc').write_text('machine api.wandb.ai\n  login user\n  password abc\n')
    os.chmod(tmp_path / '.netrc', 0o600)
    assert writer.resolve_wandb_mode('online') == 'online'
    (tmp_path / '.netrc').unlink()
    monkeypatch.setenv('WANDB_API_KEY', 'x' * 40)
    assert writer.resolve_wandb_mode('online') == 'online'
    assert writer.resolve_wandb_mode('offline') == 'offline'
    assert writer.resolve_wandb_mode('disabled') == 'disabled'
    with pytest.raises(ValueError, match="unknown wandb.mode 'onlin'; valid: online, offline"):
        writer.resolve_wandb_mode('onlin')


def test_offline_run_carries_the_config_and_resumes_as_the_same_run(digits_config, tmp_path,
                                                                    monkeypatch):
    secret = 'secret' + '0123456789' * 4
    monkeypatch.setenv('WANDB_API_KEY', secret)
    config = digits_config
    config.wandb.mode, config.wandb.group, config.wandb.tags = 'offline', 'ladder', ('a', 'b')
    first = writer.MetricWriter(str(tmp_path), config)
    run_id = first.run.id
    assert (first.run.name, first.run.group, tuple(first.run.tags)) == (
        tmp_path.name, 'ladder', ('a', 'b'))
    assert first.run.config['optim']['base_lr'] == config.optim.base_lr
    first.write(10, 'train', {'loss': 1.5, 'top1': 0.5})
    first.close()
    second = writer.MetricWriter(str(tmp_path), config)
    assert second.run.id == run_id  # A resumed workdir logs to the same W&B run.
    second.write(10, 'train', {'loss': 1.25, 'top1': 0.75})  # A step re-run after a crash.
    second.write(20, 'eval', {'loss': 1.0, 'top1': 0.8})
    second.write_summary({'final_top1': 0.8})
    second.close()

    lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
    assert len(lines) == 3  # Append-only: nothing an earlier run wrote is lost...
    assert writer.read_metrics(str(tmp_path)) == [  # ...and readers keep the newest per step.
        {'step': 10, 'split': 'train', 'loss': 1.25, 'top1': 0.75},
        {'step': 20, 'split': 'eval', 'loss': 1.0, 'top1': 0.8}]
    assert json.loads((tmp_path / 'summary.json').read_text()) == {'final_top1': 0.8}
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                assert secret.encode() not in f.read(), name
