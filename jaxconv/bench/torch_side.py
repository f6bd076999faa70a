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

from jaxconv.bench.measure import throughput
from jaxconv.torch_support import import_torch

MODES = ('eager', 'channels_last', 'compile')
_AUX_LOSS_WEIGHT = 0.3  # configs/common.py's train.aux_loss_weight.
# jaxconv name -> (library, name there) where the libraries name it differently, or None where
# the same name is a different network.
TORCH_NAMES: dict[str, tuple[str, str] | None] = {
    'alexnet': None,  # The paper's two-tower net; torchvision's alexnet is our alexnet_tv.
    'alexnet_tv': ('torchvision', 'alexnet'),
    'mobilenet_v1': ('timm', 'mobilenetv1_100'),
    'resnet_rs50': ('timm', 'resnetrs50'), 'resnet_rs101': ('timm', 'resnetrs101'),
    'resnet_rs152': ('timm', 'resnetrs152'), 'resnet_rs200': ('timm', 'resnetrs200'),
    'resnet_rs270': ('timm', 'resnetrs270'), 'resnet_rs350': ('timm', 'resnetrs350'),
    'resnet_rs420': ('timm', 'resnetrs420'),
    'efficientnet_b0': ('timm', 'efficientnet_b0'),  # timm: the family's reference here.
}


def counterpart(name: str) -> tuple[str, str] | None:
    """(library, name there) of the PyTorch model matching jaxconv's `name`, or None."""
    _, torchvision, timm = import_torch()
    if name in TORCH_NAMES and TORCH_NAMES[name] is None:
        return None
    library, other = TORCH_NAMES.get(name) or (None, name)
    if library in (None, 'torchvision') and other in torchvision.models.list_models():
        return 'torchvision', other
    if library in (None, 'timm') and other in timm.list_models():
        return 'timm', other
    return None


def torch_model(library: str, name: str, num_classes: int) -> Any:
    """A randomly initialised torchvision or timm model."""
    _, torchvision, timm = import_torch()
    if library == 'timm':
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    # With their auxiliary heads, as jaxconv trains them; the default init is slow (scipy).
    kwargs = ({'aux_logits': True, 'init_weights': False}
              if name in ('googlenet', 'inception_v3') else {})
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


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
    found = counterpart(name)
    if found is None:
        return [{'model': name, 'mode': mode, 'error': 'no torchvision/timm counterpart'}
                for mode in modes]
    rows = []
    for mode in modes:
        model = torch_model(*found, num_classes)  # A fresh model per mode.
        row = {'model': name, 'source': ':'.join(found), 'mode': mode, 'batch': batch,
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
