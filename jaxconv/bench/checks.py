"""Checks that a compiled step is the step we think it is, read from the step itself and its HLO.

- one compile: XLA backend compilations counted (`jax.monitoring`) over all calls of the step;
  a second one means a shape, dtype or weak type changed between calls.
- no host transfer: a call under `jax.transfer_guard('disallow')`, and no host callback, infeed,
  outfeed, send or recv in the optimised HLO.
- state donated: every input buffer of the state is consumed by the call (XLA reuses it for the
  new state), so no copy of the parameters is made per step.
- precision: parameters (the master weights) are float32, and every convolution the program asks
  for runs in the requested compute dtype (StableHLO before the backend). What the backend then
  runs is reported beside it: XLA:CPU has no bfloat16 convolution and computes them in float32.
- layout: no transpose or layout-changing copy of an activation next to a convolution (NHWC <->
  NCHW shuffles that cost memory bandwidth); transposes of kernels (the backward pass flips and
  transposes every kernel, parameter-sized) are not counted.
"""

import dataclasses
import re
from typing import Any

import jax
import numpy as np

from jaxconv.bench import hlo

_BACKEND_COMPILE = '/jax/core/compile/backend_compile_duration'
_HOST_OPCODES = ('send', 'recv', 'send-done', 'recv-done', 'infeed', 'outfeed')
_STABLEHLO_CONV = re.compile(
    r'stablehlo\.convolution.*:\s*\(tensor<(?:\d+x)*([a-z]\w*)>,\s*tensor<(?:\d+x)*([a-z]\w*)>\)')


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    detail: str


class CompileCounter:
    """Counts XLA backend compilations while entered (any function, any thread)."""

    _active: list['CompileCounter'] = []
    _listening = False

    def __init__(self):
        self.count = 0

    @classmethod
    def _listen(cls, event: str, duration: float, **kwargs: Any) -> None:
        del duration, kwargs
        if event == _BACKEND_COMPILE:
            for counter in cls._active:
                counter.count += 1

    def __enter__(self) -> 'CompileCounter':
        if not CompileCounter._listening:  # jax.monitoring has no public way to unregister.
            jax.monitoring.register_event_duration_secs_listener(CompileCounter._listen)
            CompileCounter._listening = True
        CompileCounter._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        CompileCounter._active.remove(self)


def one_compile(compiles: int, calls: int) -> Check:
    return Check('one compile', compiles == 1, f'{compiles} compile(s) over {calls} calls')


def no_host_transfer(module: hlo.Module, guard_error: str | None) -> Check:
    """No implicit transfer when called under the guard, and no host traffic in the program."""
    host_ops = [i.name for i in module.instructions()
                if i.opcode in _HOST_OPCODES or (i.opcode == 'custom-call' and 'callback' in
                                                 (i.attribute('custom_call_target') or ''))]
    problems = []
    if guard_error:
        problems.append(f'transfer guard: {guard_error}')
    if host_ops:
        problems.append(f'host ops in HLO: {", ".join(sorted(host_ops)[:3])}')
    return Check('no host transfer', not problems, '; '.join(problems) or 'none in the step')


def state_donated(state_leaves: list[jax.Array]) -> Check:
    """Every state buffer passed to a call was consumed by it (call the step first)."""
    consumed = sum(leaf.is_deleted() for leaf in state_leaves)
    return Check('state donated', consumed == len(state_leaves),
                 f'{consumed}/{len(state_leaves)} state buffers reused')


def precision(params: Any, stablehlo_text: str, module: hlo.Module, dtype: str) -> Check:
    """float32 master weights; every convolution asked for in `dtype` (bfloat16 or float32)."""
    want = {'float32': 'f32', 'bfloat16': 'bf16'}[dtype]
    master = {str(np.dtype(leaf.dtype)) for leaf in jax.tree.leaves(params)}
    asked = [lhs for lhs, _ in _STABLEHLO_CONV.findall(stablehlo_text)]
    run = [i.outputs[0].dtype for i in module.instructions()
           if i.outputs and hlo.is_convolution(i)]
    passed = master <= {'float32'} and all(t == want for t in asked)
    detail = (f'params {"/".join(sorted(master))}; {sum(t == want for t in asked)}/{len(asked)} '
              f'convs asked in {want}; backend runs {sum(t == want for t in run)}/{len(run)} '
              f'in {want}')
    return Check('precision', passed, detail)


_STABLEHLO_TRANSPOSE = re.compile(
    r'stablehlo\.transpose %\S+, dims = \[([\d, ]+)\] : \(tensor<([\dx]+)x[a-z]\w*>\)')


def _signature(dims: tuple[int, ...]) -> tuple[int, ...]:
    """A shape up to order and unit dimensions: how a kernel is recognised after reshapes."""
    return tuple(sorted(d for d in dims if d != 1))


def _program_transposes(stablehlo_text: str, kernel_shapes: set) -> list[tuple[int, ...]]:
    """Input shapes of the program's transposes that move an activation's data."""
    found = []
    for permutation_text, shape_text in _STABLEHLO_TRANSPOSE.findall(stablehlo_text):
        permutation = [int(d) for d in permutation_text.split(',')]
        dims = tuple(int(d) for d in shape_text.split('x'))
        moved = [d for d in permutation if dims[d] != 1]
        if len(dims) >= 3 and moved != sorted(moved) and _signature(dims) not in kernel_shapes:
            found.append(dims)
    return found


def no_layout_transposes(stablehlo_text: str, module: hlo.Module,
                         param_shapes: list[tuple[int, ...]]) -> Check:
    """No activation transpose in our program, nor one the backend put next to a convolution.

    The program (StableHLO) is what the model code asks for; the backend (optimised HLO) may add
    its own, e.g. XLA:CPU copies activations into the layouts its weight-gradient convolutions
    need.
    """
    kernel_shapes = {_signature(s) for s in param_shapes}
    asked = _program_transposes(stablehlo_text, kernel_shapes)
    backend = _backend_transposes(module, kernel_shapes)
    megabytes = sum(s.bytes for s in backend) / 2**20
    return Check('no layout transposes', not asked and not backend,
                 f'program {len(asked)}; backend {len(backend)} next to convolutions '
                 f'({megabytes:.1f} MB)')


def _backend_transposes(module: hlo.Module, kernel_shapes: set) -> list[hlo.Shape]:
    """Activation-sized transposes or layout copies that feed or follow a convolution."""
    bodies = module.computations

    def contains_conv(instruction: hlo.Instruction) -> bool:
        return hlo.is_convolution(instruction) or any(
            contains_conv(i) for i in module.called(instruction).values()
            if instruction.opcode == 'fusion')

    def transposed(instruction: hlo.Instruction) -> list[hlo.Instruction]:
        """Activation-shaped transposes this instruction is, or its fused body holds."""
        if instruction.opcode == 'fusion':
            body = module.called(instruction)
            return [i for i in body.values() if is_activation_transpose(i, body)]
        body = bodies[instruction.computation]
        return [instruction] if is_activation_transpose(instruction, body) else []

    def is_activation_transpose(instruction: hlo.Instruction, body: dict) -> bool:
        shape = instruction.shape
        return (shape is not None and len(shape.dims) >= 3
                and _signature(shape.dims) not in kernel_shapes
                and hlo.moves_data(instruction, body))

    def producer(name: str, body: dict) -> hlo.Instruction | None:
        instruction = body.get(name)
        while instruction is not None and instruction.opcode in ('bitcast', 'get-tuple-element'):
            instruction = body.get(instruction.operands[0]) if instruction.operands else None
        return instruction

    found: dict[tuple[str, str], hlo.Shape] = {}
    for body in bodies.values():
        for consumer in body.values():
            for name in consumer.operands:
                source = producer(name, body)
                if source is None:
                    continue
                pairs = ((transposed(source) if contains_conv(consumer) else [])
                         + (transposed(consumer) if contains_conv(source) else []))
                found.update({(i.computation, i.name): i.shape for i in pairs})
    return list(found.values())
