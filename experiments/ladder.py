"""Run an additive ladder rung by rung through the CLI and write its table.

  python experiments/ladder.py --config=configs/resnet_rs.py --workdir=runs/rs200_ladder
  python experiments/ladder.py --config=configs/resnet_rs.py:depth=18,dataset=digits \
      --workdir=runs/ladder_smoke -- --config.train.steps=200 --config.dataset.image_size=32

A ladder config file defines `RUNGS` (ordered names) and takes `rung=NAME` in its argument; it may
define `PUBLISHED_TOP1` ({rung: top-1 %}) for the comparison columns. Each rung runs as
  python -m jaxconv.main --config=FILE:ARG,rung=NAME --workdir=WORKDIR/NAME [overrides after --]
in its own process, in order, with `wandb.group` set to the ladder's workdir name, so re-running
the ladder resumes or skips finished rungs. The table (rung, the keys it switched, top-1, delta to
the previous rung, and the published figures) goes to WORKDIR/ladder.md and WORKDIR/ladder.json.
"""

import argparse
import json
import os
import subprocess
import sys

from jaxconv import config_files, recipes


def run_ladder(spec: str, workdir: str, overrides: list[str]) -> list[dict]:
    """Trains every rung (resuming finished ones instantly) and returns the table rows."""
    path, _, _ = spec.partition(':')
    module = config_files.load_module(path)
    published = getattr(module, 'PUBLISHED_TOP1', {})
    group = os.path.basename(os.path.abspath(workdir))
    specs = recipes.ladder_specs(spec)
    # Rungs share most of their XLA programs (init and eval change only with the architecture), so
    # a persistent compilation cache saves each later rung those compiles.
    environment = {'JAX_COMPILATION_CACHE_DIR': os.path.join(workdir, 'jax_cache'), **os.environ}
    rows = []
    for index, (rung, rung_spec) in enumerate(zip(module.RUNGS, specs, strict=True)):
        rung_dir = os.path.join(workdir, rung)
        command = [sys.executable, '-m', 'jaxconv.main', f'--config={rung_spec}',
                   f'--workdir={rung_dir}', f'--config.wandb.group={group}',
                   f'--config.wandb.name={group}/{rung}', *overrides]
        print(f'== {rung}: {" ".join(command[1:])}', flush=True)
        code = subprocess.call(command, env=environment)
        if code != 0:
            raise SystemExit(f'ladder stopped: rung {rung} exited with {code}; fix it and re-run '
                             'the same command to continue (finished rungs are kept)')
        with open(os.path.join(rung_dir, 'summary.json')) as f:
            summary = json.load(f)
        switched = recipes.diff(specs[index - 1], rung_spec) if index else {}
        top1 = 100 * summary['final_top1']
        rows.append({
            'rung': rung,
            'switch': ', '.join(f'{key}={b!r}' for key, (_, b) in switched.items()),
            'top1': top1,
            'delta': top1 - rows[-1]['top1'] if rows else None,
            'ema_top1': 100 * summary['final_ema_top1'] if 'final_ema_top1' in summary else None,
            'published_top1': published.get(rung),
            'published_delta': (published[rung] - published[module.RUNGS[index - 1]]
                                if index and rung in published else None),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    def number(value, signed=False):
        return '' if value is None else (f'{value:+.2f}' if signed else f'{value:.2f}')

    lines = ['| rung | switch | top-1 | Δ | EMA top-1 | published top-1 | published Δ |',
             '|---|---|---:|---:|---:|---:|---:|']
    for row in rows:
        lines.append(f'| {row["rung"]} | {row["switch"] or "—"} | {number(row["top1"])} | '
                     f'{number(row["delta"], True)} | {number(row["ema_top1"])} | '
                     f'{number(row["published_top1"])} | {number(row["published_delta"], True)} |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, overrides = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv else (
        argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', required=True, help='ladder config, FILE.py[:ARG]')
    parser.add_argument('--workdir', required=True)
    args = parser.parse_args(own)
    rows = run_ladder(args.config, args.workdir, overrides)
    os.makedirs(args.workdir, exist_ok=True)
    table = markdown(rows)
    with open(os.path.join(args.workdir, 'ladder.md'), 'w') as f:
        f.write(table)
    with open(os.path.join(args.workdir, 'ladder.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
