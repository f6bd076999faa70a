"""Test-wide set-up: 8 virtual CPU devices, quiet TensorFlow, no W&B network, shared data."""

import os

# Before JAX or TF is imported anywhere: the multi-device tests need 8 devices on one CPU.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('WANDB_SILENT', 'true')
os.environ.pop('WANDB_API_KEY', None)  # Tests never log online.

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

_CACHE_VARIABLE = 'JAXCONV_TEST_COMPILATION_CACHE'

# The longest tests start first, so that pytest-xdist's two workers finish together.
RUN_FIRST = ('test_smoke_ladder_survives_sigterm_and_a_failing_rung',
             'test_default_job_trains_lenet5_on_digits')


def pytest_configure(config):
    """One persistent XLA compilation cache for the whole run: both xdist workers (which inherit
    the controller's environment) and every trainer process a test starts load a program another
    test already compiled instead of compiling it again. Study tests keep their study's own cache
    (they drop JAX_COMPILATION_CACHE_DIR), as a user's study would."""
    if not hasattr(config, 'workerinput'):  # The controller, or a run without xdist.
        os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix='jaxconv-test-xla-cache-')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ[_CACHE_VARIABLE]
    import jax
    jax.config.update('jax_compilation_cache_dir', os.environ[_CACHE_VARIABLE])


def pytest_unconfigure(config):
    if not hasattr(config, 'workerinput'):
        shutil.rmtree(os.environ.pop(_CACHE_VARIABLE), ignore_errors=True)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.originalname not in RUN_FIRST)


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with the embedded digits dataset prepared (once per test process)."""
    from configs import common
    from jaxconv.data import pipeline

    data_dir = str(tmp_path_factory.mktemp('tfds'))
    config = common.get_config()
    config.dataset.data_dir = data_dir
    pipeline.get_builder(config.dataset)
    return data_dir


@pytest.fixture
def digits_config(digits_dir):
    """The default job's config on the prepared digits, with W&B off; tests shrink it further."""
    from configs import lenet5_digits

    config = lenet5_digits.get_config()
    config.dataset.data_dir = digits_dir
    config.wandb.mode = 'disabled'
    return config
