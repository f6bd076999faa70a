"""Command line entry point.

  python -m jaxconv.main --config=configs/lenet5_digits.py --workdir=runs/lenet5 \
      [--config.optim.base_lr=0.05 ...]

Re-running with the same --workdir resumes from its newest checkpoint; a changed config is
refused unless --allow_config_change (README, "What survives what"). `--config.model.kwargs.FIELD=V`
sets any field of the model's module, typed like its default. Multi-host: start one process per
host with the same command; `jax.distributed.initialize()` runs when the environment (SLURM,
Open MPI, --num_processes > 1 or JAX_COORDINATOR_ADDRESS) says the job has several.

Bad input exits non-zero with one line saying what was wrong and what is valid; set
JAXCONV_TRACEBACK=1 to see the full traceback (and Orbax's) instead.
"""

import difflib
import logging as python_logging
import os
import sys

# Before TensorFlow is imported: quiet its C++ start-up notices (oneDNN, CPU features).
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

import jax  # noqa: E402
import ml_collections  # noqa: E402
from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxconv import config_files  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, FILE.py[:ARG].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for multi-host runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in a multi-host run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index in a multi-host run.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False,
    'Resume a workdir whose config.json differs from this config; each config segment is '
    'recorded with its step range in summary.json.')

_MODEL_KWARGS = '--config.model.kwargs.'


def _is_multi_process() -> bool:
    return ((_NUM_PROCESSES.value or 1) > 1 or bool(_COORDINATOR.value)
            or bool(os.environ.get('JAX_COORDINATOR_ADDRESS'))
            or int(os.environ.get('SLURM_NTASKS', '1')) > 1
            or int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1)


def _fail(message: str, code: int = 1) -> int:
    print(f'jaxconv: error: {message}', file=sys.stderr)
    return code


def _config_file_problem(argv: list[str]) -> str | None:
    """A missing config file, or the first --config.KEY override that names no key, explained."""
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec is None:
        return None
    try:
        config = config_files.load(spec)
    except (FileNotFoundError, ValueError) as error:  # Missing file, bad FILE.py:ARG, no config.
        return str(error)
    for override in (a for a in argv if a.startswith('--config.')):
        key = override[len('--config.'):].split('=', 1)[0]
        node, walked = config, []
        for part in key.split('.'):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                close = difflib.get_close_matches(part, valid, n=1)
                hint = f'did you mean {close[0]}? ' if close else ''
                where = '.'.join(walked) or 'the config'
                return (f'unknown config key --config.{key}; {hint}valid keys in {where}: '
                        f'{", ".join(valid) or "none (declare the key in the config file first)"}')
            node, walked = node[part], [*walked, part]
    return None


def split_model_kwargs(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the other arguments, [(field, text)] of every --config.model.kwargs.FIELD[=]VALUE)."""
    rest, kwargs, args = [], [], iter(argv)
    for arg in args:
        if not arg.startswith(_MODEL_KWARGS):
            rest.append(arg)
            continue
        key, has_value, text = arg[len(_MODEL_KWARGS):].partition('=')
        kwargs.append((key, text if has_value else next(args, '')))
    return rest, kwargs


def apply_model_kwargs(config: ml_collections.ConfigDict,
                       kwargs: list[tuple[str, str]]) -> ml_collections.ConfigDict:
    """Sets each model.kwargs field from its command-line text, checked against the model.

    Model fields are not keys of the config file (they depend on `model.name`, which may itself
    be overridden), so they are typed here, by the field's default in the model's module.
    """
    from jaxconv.train import recipe

    with config.unlocked():
        for key, text in kwargs:
            config.model.kwargs[key] = recipe.parse_model_kwarg(config.model.name, key, text)
    return config


class _OneLineOrbaxErrors(python_logging.Filter):
    """Orbax logs each failure with a full traceback from several threads; one line each is
    enough next to our own error line (JAXCONV_TRACEBACK=1 keeps them whole)."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.levelno >= python_logging.ERROR and '/orbax/' in record.pathname:
            record.msg = record.getMessage().splitlines()[0][:300]
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    argv, model_kwargs = split_model_kwargs(argv)
    sys.argv = argv  # ml_collections' config flag looks for its overrides in sys.argv itself.
    problem = _config_file_problem(argv)  # Clearer than what flag parsing says about these.
    if problem:
        return _fail(problem, code=2)
    try:
        flags.FLAGS(argv)
    except flags.Error as error:
        return _fail(str(error).splitlines()[0], code=2)
    if _CONFIG.value is None or _WORKDIR.value is None:
        return _fail('--config=configs/FILE.py and --workdir=DIR are both required', code=2)
    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS are chatty at INFO.
    if not os.environ.get('JAXCONV_TRACEBACK'):
        python_logging.getLogger('absl').addFilter(_OneLineOrbaxErrors())

    if _is_multi_process():  # Before anything touches a JAX backend.
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                   num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    from jaxconv.train import loop  # Imports TensorFlow; after flags, so --help stays fast.

    try:
        config = apply_model_kwargs(_CONFIG.value, model_kwargs)
        summary = loop.train_and_evaluate(config, _WORKDIR.value,
                                          allow_config_change=_ALLOW_CONFIG_CHANGE.value)
    except loop.TrainingInterrupted as interrupted:
        print(f'jaxconv: {interrupted}', file=sys.stderr)
        return 128 + interrupted.signum
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        if os.environ.get('JAXCONV_TRACEBACK'):
            raise
        return _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    if jax.process_index() == 0:
        best_split = summary['metrics_from']['best_*']  # minival when one is held out.
        try:
            test = (f'test top-1 {summary["final_top1"]:.4f}, top-5 {summary["final_top5"]:.4f}'
                    if 'final_top1' in summary else 'test split not read (dataset.test_at_end)')
            print(f'{summary["model"]} on {summary["dataset"]}: {summary["steps"]} steps in '
                  f'{summary["wall_seconds"]:.0f} s; {test} (best {best_split} top-1 '
                  f'{summary["best_top1"]:.4f} at step {summary["best_step"]}); results in '
                  f'{_WORKDIR.value}', flush=True)
        except BrokenPipeError:  # `... | head` closed stdout; the run itself succeeded.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == '__main__':
    # SIGPIPE keeps Python's default (ignored, so a write to a closed pipe raises): with the
    # system default, a W&B process that dies kills training mid-step without a checkpoint.
    sys.exit(main())
