"""The same model, batch, resolution and dtype in PyTorch, timed the way `measure.py` times JAX.

The counterpart comes from torchvision when it has the name, else from timm (random weights);
`TORCH_NAMES` maps the names the two spell differently. Three ways of running it:

- `eager`: NCHW tensors, as most PyTorch code runs;
- `channels_last`: model and input in NHWC memory order (oneDNN's and cuDNN's fast path);
- `compile`: channels-last under `torch.compile` (Inductor), where it compiles.

A train step is forward, cross-entropy, backward and SGD with Nesterov momentum and weight decay
(`set_to_none` gradients); bfloat16 runs under `torch.autocast` with float32 weights, as
`model.compute_dtype=bfloat16` does in jaxconv. Eval is a forward pass under `inference_mode`.
"""

import time
from typing import Any

import numpy as np

from jaxconv.bench.measure import throughput
from jaxconv.torch_support import import_torch

MODES = ('eager', 'channels_last', 'compile')
_AUX_LOSS_WEIGHT = 0.3  # configs/common.py's train.aux_loss_weight.
# jaxconv name -> (library, name there) where the libraries name it differently.
TORCH_NAMES = {
    'alexnet_tv': ('torchvision', 'alexnet'),
    'mobilenet_v1': ('timm', 'mobilenetv1_100'),
    'resnet_rs50': ('timm', 'resnetrs50'), 'resnet_rs101': ('timm', 'resnetrs101'),
    'resnet_rs152': ('timm', 'resnetrs152'), 'resnet_rs200': ('timm', 'resnetrs200'),
    'resnet_rs270': ('timm', 'resnetrs270'), 'resnet_rs350': ('timm', 'resnetrs350'),
    'resnet_rs420': ('timm', 'resnetrs420'),
    'efficientnet_b0': ('timm', 'efficientnet_b0'),  # torchvision's differs in BN epsilon only.
}


def torch_model(name: str, num_classes: int) -> tuple[Any, str] | None:
    """(module, 'library:name') of the PyTorch counterpart of `name`, or None."""
    _, torchvision, timm = import_torch()
    library, other = TORCH_NAMES.get(name, (None, name))
    if library in (None, 'torchvision') and other in torchvision.models.list_models():
        # With their auxiliary heads, as jaxconv trains them; the default init is slow (scipy).
        kwargs = {'aux_logits': True, 'init_weights': False} if other in (
            'googlenet', 'inception_v3') else {}
        return (torchvision.models.get_model(other, weights=None, num_classes=num_classes,
                                             **kwargs), f'torchvision:{other}')
    if library in (None, 'timm') and other in timm.list_models():
        return timm.create_model(other, pretrained=False, num_classes=num_classes), f'timm:{other}'
    return None


def device_name() -> str:
    torch, _, _ = import_torch()
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'[:200]


def _time(step, *, warmup: int, steps: int, synchronize) -> list[float]:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def benchmark_torch(name: str, *, batch: int, resolution: int, dtype: str, steps: int,
                    warmup: int, modes: tuple[str, ...] = MODES, channels: int = 3,
                    num_classes: int = 1000, profile_calls: int = 0) -> list[dict]:
    """One row per mode: train and eval throughput, or the reason it could not run.

    With `profile_calls`, the channels-last train step is also profiled (`profile.py`).
    """
    torch, _, _ = import_torch()
    device = device_name()
    synchronize = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    # cuDNN picks its fastest algorithms by trying them, as XLA's autotuner does for JAX.
    torch.backends.cudnn.benchmark = True
    found = torch_model(name, num_classes)
    if found is None:
        return [{'model': name, 'mode': mode, 'error': 'no torchvision/timm counterpart'}
                for mode in modes]
    rows = []
    for mode in modes:
        model, source = torch_model(name, num_classes)  # A fresh model per mode.
        row = {'model': name, 'source': source, 'mode': mode, 'batch': batch,
               'resolution': resolution, 'dtype': dtype, 'device': device,
               'threads': torch.get_num_threads(),
               'params': sum(p.numel() for p in model.parameters())}
        try:
            row.update(_run_mode(torch, model, mode, batch=batch, resolution=resolution,
                                 dtype=dtype, steps=steps, warmup=warmup, channels=channels,
                                 num_classes=num_classes, device=device,
                                 synchronize=synchronize,
                                 profile_calls=profile_calls if mode == 'channels_last' else 0))
        except Exception as e:  # torch.compile without a working toolchain, out of memory...
            row['error'] = _first_line(e)
        rows.append(row)
        del model
        if device == 'cuda':
            torch.cuda.empty_cache()
    return rows


def _run_mode(torch, model, mode: str, *, batch, resolution, dtype, steps, warmup, channels,
              num_classes, device, synchronize, profile_calls) -> dict:
    memory_format = torch.contiguous_format if mode == 'eager' else torch.channels_last
    model = model.to(device=device, memory_format=memory_format)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, channels, resolution, resolution, generator=generator)
    images = images.to(device=device, memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == 'bfloat16')
    forward = model
    figures = {}
    if mode == 'compile':
        start = time.perf_counter()
        forward = torch.compile(model)
    else:
        start = None

    def train_step():
        with autocast:
            outputs = forward(images)
            # GoogLeNet and Inception v3 return (logits, aux logits...) in training.
            logits, aux = (outputs[0], outputs[1:]) if isinstance(outputs, tuple) else (outputs, ())
            loss = torch.nn.functional.cross_entropy(logits, labels)
            for head in aux:
                if head is not None:
                    loss = loss + _AUX_LOSS_WEIGHT * torch.nn.functional.cross_entropy(head, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def eval_step():
        with torch.inference_mode(), autocast:
            forward(images)

    model.train()
    if start is not None:  # The first call compiles (forward and backward graphs).
        train_step()
        synchronize()
        figures['compile_train_s'] = time.perf_counter() - start
    figures['train'] = throughput(_time(train_step, warmup=warmup, steps=steps,
                                        synchronize=synchronize), batch)
    if profile_calls:
        from jaxconv.bench import profile

        figures['profile'] = profile.torch_breakdown(
            torch, lambda: _time(train_step, warmup=0, steps=1, synchronize=synchronize)[0],
            calls=profile_calls)
    model.eval()
    if start is not None:
        start = time.perf_counter()
        eval_step()
        synchronize()
        figures['compile_eval_s'] = time.perf_counter() - start
    figures['eval'] = throughput(_time(eval_step, warmup=warmup, steps=steps,
                                       synchronize=synchronize), batch)
    return figures


def best_torch(rows: list[dict], key: str) -> dict | None:
    """The fastest mode's row for `key` ('train' or 'eval'), among those that ran."""
    ran = [row for row in rows if key in row]
    return max(ran, key=lambda row: row[key]['img_per_sec']) if ran else None


def ratios(jax_row: dict, torch_rows: list[dict]) -> dict:
    """jaxconv img/s over each torch mode's, for train and eval (nan where a mode failed)."""
    out = {}
    for row in torch_rows:
        for key in ('train', 'eval'):
            theirs = row.get(key, {}).get('img_per_sec', np.nan)
            out[f'{key}_{row["mode"]}'] = jax_row[key]['img_per_sec'] / theirs
    return out
