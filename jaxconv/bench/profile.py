"""Where a step's time goes, in JAX and in PyTorch, by kind of operation.

JAX: a `jax.profiler` trace of a few calls of the compiled step. Each event is named after the
HLO instruction the runtime ran (a fusion, a convolution, a copy...); the compiled module's text
tells its kind. Convolutions are split by direction with the op names JAX records: the forward
pass's are under `jvp(...)`, the backward pass's under `transpose(jvp(...))`, and kernel gradients
(which may carry no op name) have a kernel's shape.

PyTorch: `torch.profiler` over the same number of calls of its train step; self CPU (or CUDA)
time per aten op, grouped the same way (`aten::convolution_backward` computes both gradients).

The two profilers count time differently (XLA:CPU's events sum over its worker threads, PyTorch's
self time is the calling thread's), so each breakdown is a share of its own step, converted to
milliseconds with the step's measured wall-clock time; comparable across the two.
"""

import collections
import glob
import os
import re
from collections.abc import Callable

import jax

from jaxconv.bench import hlo

KINDS = ('convolution: forward', 'convolution: backward (input and kernel gradients)',
         'transpose / copy', 'other fusions and ops')
_XLA_THREADS = ('XLAEigen', 'XLAPjRtCpuClient', 'Stream', 'XLA Ops')  # CPU pools; GPU streams.
# Events that contain others, or are waiting rather than computing.
_WRAPPERS = ('ThunkExecutor', 'Execute', 'end-to-end', 'end: ', 'ThreadpoolListener',
             'SlinkyThreadPool')
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def _instructions(module: hlo.Module) -> dict[str, hlo.Instruction]:
    return {i.name: i for i in module.instructions()}


def _convolution(instruction: hlo.Instruction, module: hlo.Module) -> hlo.Instruction | None:
    """The convolution this instruction is, or the first one its fused body holds."""
    if hlo.is_convolution(instruction):
        return instruction
    if instruction.opcode != 'fusion':
        return None
    return next(filter(None, (_convolution(i, module)
                              for i in module.called(instruction).values())), None)


def kind_of(instruction: hlo.Instruction | None, module: hlo.Module,
            kernel_signatures: set[tuple[int, ...]]) -> str:
    if instruction is None:
        return KINDS[3]
    convolution = _convolution(instruction, module)
    if convolution is not None:
        op_name = (_OP_NAME.findall(convolution.attributes) or [''])[0]
        # Kernel gradients may carry no op name; their output has a kernel's shape.
        kernel_shaped = bool(convolution.outputs) and tuple(sorted(
            d for d in convolution.outputs[0].dims if d != 1)) in kernel_signatures
        return KINDS[1] if 'transpose(' in op_name or kernel_shaped else KINDS[0]
    if instruction.opcode in ('copy', 'transpose') or re.search(
            r'(^|_)(copy|transpose)', instruction.name):
        return KINDS[2]
    return KINDS[3]


def jax_breakdown(call: Callable[[], float], compiled_text: str,
                  param_shapes: list[tuple[int, ...]], *, calls: int,
                  trace_dir: str) -> list[dict]:
    """Share of each kind, and milliseconds per call, over `calls` traced calls of `call`
    (which runs one step and returns its seconds)."""
    os.makedirs(trace_dir, exist_ok=True)
    with jax.profiler.trace(trace_dir):
        seconds = [call() for _ in range(calls)]
    newest = max(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True),
                 key=os.path.getmtime)
    module = hlo.parse(compiled_text)
    instructions = _instructions(module)
    kernels = {tuple(sorted(d for d in shape if d != 1)) for shape in param_shapes}
    totals = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(newest).planes:
        for line in plane.lines:
            if not any(thread in line.name for thread in _XLA_THREADS):
                continue
            for event in line.events:
                if any(event.name.startswith(w) for w in _WRAPPERS):
                    continue
                totals[kind_of(instructions.get(event.name), module, kernels)] += event.duration_ns
    return _rows(totals, seconds)


def torch_breakdown(torch, step: Callable[[], float], *, calls: int) -> list[dict]:
    """The same for a PyTorch train step, by aten op (self time, so nothing counts twice)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        seconds = [step() for _ in range(calls)]
    totals = collections.Counter()
    on_gpu = torch.cuda.is_available()
    for event in profiler.key_averages():
        ns = 1000 * (event.self_device_time_total if on_gpu else event.self_cpu_time_total)
        name = event.key
        if 'convolution_backward' in name:
            totals[KINDS[1]] += ns
        elif 'conv' in name and name.startswith(('aten::', 'mkldnn', 'cudnn')):
            totals[KINDS[0]] += ns
        elif name in ('aten::copy_', 'aten::contiguous', 'aten::clone', 'aten::permute'):
            totals[KINDS[2]] += ns
        elif name.startswith('aten::') or on_gpu:
            totals[KINDS[3]] += ns
    return _rows(totals, seconds)


def _rows(totals: collections.Counter, seconds: list[float]) -> list[dict]:
    """Each kind's share of the profiled time, and that share of the median call in ms."""
    whole = sum(totals.values()) or 1
    step_ms = 1000 * sorted(seconds)[len(seconds) // 2]
    return [{'kind': kind, 'share': totals[kind] / whole,
             'ms_per_call': step_ms * totals[kind] / whole} for kind in KINDS]
