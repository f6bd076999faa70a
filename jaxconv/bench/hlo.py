"""Just enough of XLA's HLO text to check a compiled step: instructions, shapes, layouts, calls.

`compiled.as_text()` prints the optimised module: computations (`%name (params) -> shape {`),
each a list of `%name = shape opcode(operands), attributes`. A shape is `f32[8,32,32,64]{3,2,1,0}`:
element type, dimensions, and the layout as dimension numbers from minor (fastest) to major.
"""

import dataclasses
import math
import re

_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$')
_ARRAY_SHAPE = re.compile(r'^(\w+)\[([\d,]*)\](?:\{([\d,]*)[^}]*\})?')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2, 'f32': 4,
          's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8}


@dataclasses.dataclass(frozen=True)
class Shape:
    dtype: str
    dims: tuple[int, ...]
    layout: tuple[int, ...]  # Minor to major; empty when the text gives none.

    @property
    def bytes(self) -> int:
        return math.prod(self.dims) * _BYTES.get(self.dtype, 4)


@dataclasses.dataclass
class Instruction:
    name: str
    shape: Shape | None  # None for tuples and tokens.
    outputs: tuple[Shape, ...]  # The shape, or a tuple's array shapes (cuDNN: result, scratch).
    opcode: str
    operands: list[str]
    attributes: str
    computation: str

    def attribute(self, key: str) -> str | None:
        match = re.search(rf'\b{key}=(\{{[^}}]*\}}|"[^"]*"|%?[\w.\-]+)', self.attributes)
        return match.group(1).strip('%"') if match else None


@dataclasses.dataclass
class Module:
    computations: dict[str, dict[str, Instruction]]  # Computation -> name -> instruction.

    def instructions(self):
        for body in self.computations.values():
            yield from body.values()

    def called(self, instruction: Instruction) -> dict[str, Instruction]:
        """The body of the computation a fusion or call runs, or {}."""
        return self.computations.get(instruction.attribute('calls') or '', {})


def _closing(text: str, start: int) -> int:
    """Index of the parenthesis closing the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        depth += {'(': 1, ')': -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text) - 1


def parse_shape(text: str) -> Shape | None:
    match = _ARRAY_SHAPE.match(text)
    if not match:
        return None
    dims = tuple(int(d) for d in match.group(2).split(',') if d)
    layout = tuple(int(d) for d in (match.group(3) or '').split(',') if d)
    return Shape(match.group(1), dims, layout)


def _parse_instruction(line: str, computation: str) -> Instruction | None:
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    name, rest = match.groups()
    if rest.startswith('('):  # A tuple shape.
        end = _closing(rest, 0)
        outputs = tuple(filter(None, (parse_shape(part.strip())
                                      for part in rest[1:end].split(', '))))
        shape, rest = None, rest[end + 1:].lstrip()
    else:
        shape_text, _, rest = rest.partition(' ')
        shape = parse_shape(shape_text)
        outputs = (shape,) if shape else ()
    opcode_match = re.match(r'([\w\-]+)\(', rest)
    if not opcode_match:
        return None
    open_at = opcode_match.end() - 1
    close_at = _closing(rest, open_at)
    operands = re.findall(r'%([\w.\-]+)', rest[open_at:close_at])
    return Instruction(name, shape, outputs, opcode_match.group(1), operands,
                       rest[close_at + 1:], computation)


def parse(text: str) -> Module:
    computations: dict[str, dict[str, Instruction]] = {}
    current = None
    for line in text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = computations.setdefault(header.group(1), {})
            continue
        if line.strip() == '}':
            current = None
            continue
        if current is not None:
            instruction = _parse_instruction(line, '')
            if instruction:
                current[instruction.name] = instruction
    for name, body in computations.items():
        for instruction in body.values():
            instruction.computation = name
    return Module(computations)


def is_convolution(instruction: Instruction) -> bool:
    """An XLA convolution, or a library one (cuDNN's, oneDNN's custom calls)."""
    return instruction.opcode == 'convolution' or (
        instruction.opcode == 'custom-call'
        and 'conv' in (instruction.attribute('custom_call_target') or '').lower())


def _physical_order(shape: Shape) -> list[int]:
    """Dimensions from minor to major, without size-1 ones (they do not move data)."""
    layout = shape.layout or tuple(reversed(range(len(shape.dims))))
    return [d for d in layout if shape.dims[d] != 1]


def moves_data(instruction: Instruction, body: dict[str, Instruction]) -> bool:
    """True for a transpose or copy that reorders elements in memory (not a mere relabelling).

    A transpose whose output layout lists the same physical order as its operand's is a bitcast,
    and so is a copy between equal layouts.
    """
    if instruction.opcode not in ('transpose', 'copy') or not instruction.operands:
        return False
    source = body.get(instruction.operands[0])
    if source is None or source.shape is None or instruction.shape is None:
        return False
    if instruction.opcode == 'copy':
        return _physical_order(source.shape) != _physical_order(instruction.shape)
    permutation = [int(d) for d in (instruction.attribute('dimensions') or '{}')[1:-1].split(',')
                   if d]
    out = instruction.shape
    out_layout = out.layout or tuple(reversed(range(len(out.dims))))
    as_source = [permutation[d] for d in out_layout if out.dims[d] != 1]
    return as_source != _physical_order(source.shape)
