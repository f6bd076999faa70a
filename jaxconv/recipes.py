"""Compare training recipes: which config keys two presets set differently.

  python -m jaxconv.recipes diff configs/resnet_rs.py:baseline configs/resnet_rs.py:+cosine
  python -m jaxconv.recipes ladder configs/resnet_rs.py:depth=50

`diff` prints one line per differing key, `key: A -> B`. `ladder` walks a ladder config's rungs
(the file's `RUNGS`) and prints what each rung switches on top of the previous one, which is how
a reader checks that every rung of an additive table changes exactly one thing.
"""

import argparse
import sys
from typing import Any

from jaxconv import config_files


def diff(spec_a: str, spec_b: str) -> dict[str, tuple[Any, Any]]:
    """{key: (value in A, value in B)} for every dotted key whose values differ (or exist once)."""
    flat_a = config_files.flatten(config_files.load(spec_a))
    flat_b = config_files.flatten(config_files.load(spec_b))
    missing = '<absent>'
    return {key: (flat_a.get(key, missing), flat_b.get(key, missing))
            for key in sorted(flat_a.keys() | flat_b.keys())
            if flat_a.get(key, missing) != flat_b.get(key, missing)}


def ladder_specs(spec: str) -> list[str]:
    """The spec of each rung of the ladder config in `spec`, in order."""
    path, _, arg = spec.partition(':')
    rungs = config_files.load_module(path).RUNGS
    return [f'{path}:{",".join(filter(None, [arg, f"rung={rung}"]))}' for rung in rungs]


def _format(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    return [f'{key}: {a!r} -> {b!r}' for key, (a, b) in changes.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.recipes', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    diff_parser = commands.add_parser('diff', help='keys that differ between two configs')
    diff_parser.add_argument('config_a')
    diff_parser.add_argument('config_b')
    ladder_parser = commands.add_parser('ladder', help="each rung's change over the previous")
    ladder_parser.add_argument('config')
    args = parser.parse_args(argv)
    try:
        if args.command == 'diff':
            print('\n'.join(_format(diff(args.config_a, args.config_b))) or 'no differences')
        else:
            specs = ladder_specs(args.config)
            print(specs[0])
            for previous, current in zip(specs, specs[1:], strict=False):
                print(current)
                print('\n'.join(f'  {line}' for line in _format(diff(previous, current))))
    except (FileNotFoundError, ValueError, AttributeError) as error:
        print(f'jaxconv.recipes: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
