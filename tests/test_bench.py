"""The benchmark tool: published multiply-adds, the smoke run, checks that can fail, the chart."""

import csv
import functools
import json
import math
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv.bench import __main__ as cli
from jaxconv.bench import checks, complexity, hlo, input_pipeline, measure, profile, torch_side


def test_multiply_adds_of_resnet50_and_efficientnet_b0_match_the_published_figures():
    # He et al. 2015 / torchvision: ResNet-50 (v1.5) 4.1 GMACs; Tan & Le 2019, Table 2:
    # EfficientNet-B0 0.39 B "FLOPs" (multiply-adds), both at 224.
    for name, published in (('resnet50', 4.1e9), ('efficientnet_b0', 0.39e9)):
        figures = measure.static_figures(name, resolution=224, channels=3, num_classes=1000)
        assert figures['macs'] == pytest.approx(published, rel=0.03), name
        # XLA's cost analysis also counts BN, activations and adds, and skips padding taps.
        assert figures['xla_macs'] == pytest.approx(published, rel=0.06), name
    assert figures['params'] == 5_288_548  # params.md, timm efficientnet_b0.


def test_static_mode_finds_each_models_smallest_resolution(capsys):
    # --static (and --smoke) run every registered model at the smallest probe resolution it
    # takes: torchvision's AlexNet needs 63 px (conv1 11/4, three 3/2 max pools), so 64.
    assert cli.run(['--static', '--models', 'squeezenet1_1,alexnet_tv']) == 0
    table = capsys.readouterr().out
    assert '| squeezenet1_1 | 32 | 1,235,496 |' in table  # params.md, torchvision.
    assert '| alexnet_tv | 64 |' in table


def test_smoke_run_times_the_full_path(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert cli.run(['--smoke', '--models', 'lenet5', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result['models']
    assert row['devices'] == jax.device_count()
    # LeNet-5's 61,706 (10 classes, 1 channel) with 1000 classes (+990 x 85) and 3 channels
    # (+2 x 5 x 5 x 6).
    assert row['params'] == 61_706 + 990 * 85 + 2 * 5 * 5 * 6
    for step in ('train', 'eval', 'minimal'):
        assert row[step]['img_per_sec'] > 0 and row[step]['steps'] == 2
    assert row['memory']['peak_bytes'] > row['memory']['argument_bytes'] > 0
    assert math.isfinite(row['achieved_flops']) and row['achieved_flops'] > 0
    verdict = {c['name']: c for c in row['checks']}
    for name in ('one compile', 'no host transfer', 'state donated', 'precision'):
        assert verdict[name]['passed'], verdict[name]
    assert verdict['no layout transposes']['detail'].startswith('program 0;')
    assert '| lenet5 |' in capsys.readouterr().out


def test_bad_model_name_exits_with_one_line(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert cli.run(['--models', 'resnet50,resnt18', '--json', str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("jaxconv.bench: error: unknown model 'resnt18'; did you mean")
    assert len(error.splitlines()) == 1 and not out.exists()


# ---- The compiled-step checks must be able to fail -----------------------------------------

class _TinyConvNet(nn.Module):
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), dtype=self.dtype)(x.astype(self.dtype)))
        return nn.Dense(3, dtype=self.dtype)(x.mean(axis=(1, 2)))


def _sgd_step(state, images, labels, *, model, tx, recompile=False):
    params, opt_state = state

    def loss_fn(params):
        logits = model.apply({'params': params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if recompile:  # A dtype that changes between calls: every call sees a new signature.
        params = jax.tree.map(lambda p: p.astype(jnp.bfloat16 if p.dtype == jnp.float32
                                                 else jnp.float32), params)
    return params, opt_state


def _tiny_step(model=None, donate=True, host_batch=False, **step_kwargs) -> measure.Step:
    """A tiny conv net's SGD step, its state donated, as `measure` runs the trainer's."""
    model = model or _TinyConvNet()
    tx = optax.sgd(0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 8, 8, 3), np.float32)
    # Host-side random values: a jitted random init would cost more to compile than the step.
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)['params']
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape, np.float32)),
                          shapes)
    fn = jax.jit(functools.partial(_sgd_step, model=model, tx=tx, **step_kwargs),
                 donate_argnums=(0,) if donate else ())
    return measure.Step(fn, ((params, tx.init(params)),
                             images if host_batch else jnp.asarray(images),
                             jnp.array([0, 1, 2, 0])),
                        lambda args, outputs: (outputs, *args[1:]))


def _run_checks(dtype='float32', **step_kwargs):
    step = _tiny_step(**step_kwargs)
    _, final_checks = measure.checked_start(step, dtype=dtype, params_of=lambda a: a[0][0],
                                            param_shapes=[(3, 3, 3, 4), (4, 3)])
    measure.time_interleaved([step], warmup=0, count=2)
    return {check.name: check for check in final_checks()}


def test_a_clean_step_passes_every_check():
    verdict = _run_checks()
    for name in ('one compile', 'no host transfer', 'state donated', 'precision'):
        assert verdict[name].passed, verdict[name]
    # Our program has no transposes; XLA:CPU adds its own around weight-gradient convolutions
    # (a backend choice the check reports; the forward-only test below has none).
    assert verdict['no layout transposes'].detail.startswith('program 0;')


def test_checks_flag_a_step_that_is_not_donated():
    verdict = _run_checks(donate=False)
    assert not verdict['state donated'].passed
    assert verdict['state donated'].detail.startswith('0/')


def test_a_program_loaded_from_the_persistent_cache_counts_as_its_compile(tmp_path):
    # Studies and the test suite set JAX_COMPILATION_CACHE_DIR: a warm cache loads the step
    # instead of compiling it, which must still count as the step's one compile (not zero, which
    # would fail the check; JAX reports the load as a backend compile).
    snippet = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jaxconv.bench.checks import CompileCounter
        hits = []
        jax.monitoring.register_event_listener(
            lambda event, **kw: hits.append(event) if event.endswith('cache_hits') else None)
        step = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0))
        x = jnp.ones((64, 64))
        hits.clear()
        with CompileCounter() as counter:
            for _ in range(3):
                step(x).block_until_ready()
        print(counter.count, len(hits))
    """)
    environ = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': str(tmp_path),
               'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
               'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
    counts = [subprocess.run([sys.executable, '-c', snippet], env=environ, check=True,
                             capture_output=True, text=True).stdout.split()
              for _ in range(2)]
    assert counts == [['1', '0'], ['1', '1']]  # Compiled cold, then loaded from the cache.


def test_checks_flag_a_step_that_recompiles():
    verdict = _run_checks(recompile=True)
    assert not verdict['one compile'].passed
    assert verdict['one compile'].detail.startswith('2 compile(s)')


def test_checks_flag_a_host_batch_and_a_host_callback():
    assert not _run_checks(host_batch=True)['no host transfer'].passed

    class Printing(_TinyConvNet):
        @nn.compact
        def __call__(self, x):
            jax.debug.callback(lambda v: None, x.sum())
            return super().__call__(x)

    assert 'host ops in HLO' in _run_checks(model=Printing())['no host transfer'].detail


def test_checks_flag_float32_compute_when_bfloat16_is_asked_and_bf16_master_weights():
    assert not _run_checks(dtype='bfloat16')['precision'].passed  # The model computes in f32.
    assert _run_checks(model=_TinyConvNet(jnp.bfloat16), dtype='bfloat16')['precision'].passed
    verdict = _run_checks(recompile=True)  # Its params come back as bfloat16.
    assert not verdict['precision'].passed and 'bfloat16' in verdict['precision'].detail


def test_layout_check_flags_nchw_convolutions_but_not_nhwc():
    def conv(x, w, layout):
        return jax.nn.relu(jax.lax.conv_general_dilated(
            x, w, (1, 1), 'SAME', dimension_numbers=(layout, 'HWIO', layout)))

    kernel = jnp.ones((3, 3, 16, 16))
    cases = (('NHWC', (8, 32, 32, 16), True), ('NCHW', (8, 16, 32, 32), False))
    for layout, shape, passes in cases:
        lowered = jax.jit(functools.partial(conv, layout=layout)).lower(jnp.ones(shape), kernel)
        module = hlo.parse(lowered.compile().as_text())
        check = checks.no_layout_transposes(lowered.as_text(), module, [kernel.shape])
        assert check.passed is passes, (layout, check)


def test_kernel_and_unit_dimension_transposes_are_not_flagged():
    # What JAX emits for a depthwise kernel's gradient (unit dimensions moved), a kernel flip,
    # and an activation transpose; only the last moves an activation's data.
    program = '\n'.join([
        '%1 = stablehlo.transpose %0, dims = [0, 1, 3, 2, 4] : (tensor<3x3x1x96x1xf32>) -> t',
        '%2 = stablehlo.transpose %0, dims = [1, 0, 2, 3] : (tensor<3x3x32x64xf32>) -> t',
        '%3 = stablehlo.transpose %0, dims = [0, 3, 1, 2] : (tensor<8x16x16x32xf32>) -> t'])
    kernels = {checks._signature(s) for s in [(3, 3, 1, 96), (3, 3, 32, 64)]}
    assert checks._program_transposes(program, kernels) == [(8, 16, 16, 32)]


def test_physical_transpose_is_told_from_a_relabelling():
    body = {i.name: i for i in (
        hlo._parse_instruction('%a = f32[8,2,2,512]{3,2,1,0} parameter(0)', 'c'),
        hlo._parse_instruction('%t = f32[512,2,2,8]{0,2,1,3} transpose(%a), dimensions={3,1,2,0}',
                               'c'),
        hlo._parse_instruction('%u = f32[512,2,2,8]{3,2,1,0} transpose(%a), dimensions={3,1,2,0}',
                               'c'))}
    assert not hlo.moves_data(body['t'], body)  # Same bytes in the same order: a bitcast.
    assert hlo.moves_data(body['u'], body)


def test_hlo_reads_a_cudnn_convolution():
    # The GPU form (untested here on hardware): a custom call returning (result, scratch).
    line = ('%cudnn-conv.1 = (bf16[128,56,56,64]{3,2,1,0}, u8[0]{0}) custom-call(%a, %b), '
            'window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_o01i->b01f, '
            'custom_call_target="__cudnn$convForward"')
    instruction = hlo._parse_instruction(line, 'entry')
    assert hlo.is_convolution(instruction) and instruction.operands == ['a', 'b']
    assert instruction.outputs[0] == hlo.Shape('bf16', (128, 56, 56, 64), (3, 2, 1, 0))


def test_profile_splits_a_step_into_forward_and_backward_convolutions(tmp_path):
    step = _tiny_step()
    _, compiled, _ = step.compile()
    step.call()
    rows = profile.jax_breakdown(step.call, compiled.as_text(), [(3, 3, 3, 4), (4, 3)],
                                 calls=2, trace_dir=str(tmp_path))
    share = {row['kind']: row['share'] for row in rows}
    assert sum(share.values()) == pytest.approx(1.0)
    assert share['convolution: forward'] > 0
    assert share['convolution: backward (input and kernel gradients)'] > 0


# ---- The PyTorch side -----------------------------------------------------------------------

def test_torch_counterpart_is_timed_like_ours():
    assert torch_side.counterpart('resnet_rs50') == ('timm', 'resnetrs50')
    assert torch_side.counterpart('alexnet') is None  # Two towers; torchvision's is alexnet_tv.
    assert torch_side.counterpart('lenet5') is None
    (row,) = torch_side.benchmark_torch('squeezenet1_1', batch=2, resolution=32,
                                        dtype='bfloat16', steps=2, warmup=1,
                                        modes=('channels_last',))
    assert row['source'] == 'torchvision:squeezenet1_1' and 'error' not in row, row
    assert row['params'] == 1_235_496  # params.md: the same network as ours.
    assert row['train']['img_per_sec'] > 0 and row['eval']['steps'] == 2


# ---- The input pipeline -------------------------------------------------------------------

def test_both_input_pipelines_read_the_same_jpegs(tmp_path):
    # In this process (the bench runs each side in its own pinned one; starting those costs
    # more than the test budget allows on a loaded 2-core machine).
    jpegs = input_pipeline.write_jpegs(str(tmp_path / 'jpegs'), 8)
    for library in input_pipeline.LIBRARIES:
        args = input_pipeline._parse([library, '--jpegs', jpegs, '--work', str(tmp_path),
                                      '--batch', '4', '--images', '8', '--resolution', '64'])
        args.cpus = [0]
        row = input_pipeline._measure(args)
        assert row['library'] == library and row['images'] == 8 and row['cores'] == 1
        assert row['randaugment'] == 'N=2, M=9' and row['img_per_sec_per_core'] > 0


# ---- The complexity chart ------------------------------------------------------------------

def test_complexity_chart_png_and_csv(tmp_path):
    from PIL import Image

    chart = complexity.write_chart(str(tmp_path), ['resnet18', 'googlenet', 'resnet20'])
    assert chart['models'] == 2  # resnet20 is a CIFAR model: no ImageNet bubble.
    with open(chart['csv'], newline='') as f:
        rows = {row['model']: row for row in csv.DictReader(f)}
    assert float(rows['resnet18']['top1']) == 69.758  # torchvision's IMAGENET1K_V1 metadata.
    assert float(rows['resnet18']['gmacs']) == pytest.approx(1.814, abs=5e-4)  # params.md.
    # Inference parameters: torchvision's googlenet without its two training-only heads.
    assert float(rows['googlenet']['mparams']) == pytest.approx(6.6249, abs=1e-4)
    assert complexity.chart_rows(['resnet18'], published={})[1] == ['resnet18']  # Reported.
    image = np.asarray(Image.open(chart['png']).convert('L'))
    assert image.shape == (750, 1200)
    assert (image < 200).mean() > 0.01 and image.std() > 20  # Axes, bubbles and labels drawn.


def test_every_published_row_names_its_source():
    rows = complexity.read_published()
    for row in rows.values():
        assert row.source
        if row.top1 is not None:
            assert row.dataset == 'imagenet' and 50 < row.top1 < 90 and row.resolution >= 160
