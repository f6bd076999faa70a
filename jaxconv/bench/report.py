"""Markdown tables of a benchmark run (the JSON holds every figure; these are for reading)."""

import math


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:,.{digits}f}'


def _rate(figures: dict | None) -> str:
    """'median (p10-p90)' images/s."""
    if not figures:
        return '-'
    return (f'{_num(figures["img_per_sec"], 1)} ({_num(figures["img_per_sec_p10"], 1)}-'
            f'{_num(figures["img_per_sec_p90"], 1)})')


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---' if i == 0 else '---:' for i in range(len(header))) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def static_table(rows: list[dict]) -> str:
    header = ['model', 'res', 'params', 'GMACs (count_macs)', 'GMACs (XLA cost analysis)']
    body = [[r['model'], str(r.get('resolution', '-')), _num(r.get('params')),
             _num(r.get('macs', math.nan) / 1e9, 3), _num(r.get('xla_macs', math.nan) / 1e9, 3)]
            if 'error' not in r else [r['model'], '-', r['error'], '', ''] for r in rows]
    return _table(header, body)


def model_table(rows: list[dict]) -> str:
    header = ['model', 'res', 'batch', 'dtype', 'devices', 'params', 'GMACs', 'GMACs (XLA)',
              'compile train / eval s', 'train img/s (p10-p90)', 'minimal step img/s',
              'trainer / minimal', 'eval img/s (p10-p90)', 'TFLOP/s (XLA count)',
              'TFLOP/s (6 x MACs)', 'train peak MB']
    body = []
    for r in rows:
        if 'train' not in r:
            body.append([r['model'], *['-'] * 14, r.get('error', 'failed')])
            continue
        body.append([
            r['model'], str(r['resolution']), str(r['batch']), r['dtype'],
            f'{r["devices"]} {r["device_kind"]}', _num(r['params']), _num(r['macs'] / 1e9, 3),
            _num(r['xla_macs'] / 1e9, 3),
            f'{r["compile_train_s"]:.1f} / {r["compile_eval_s"]:.1f}', _rate(r['train']),
            _rate(r['minimal']), _num(r['trainer_over_minimal'], 2), _rate(r['eval']),
            _num(r['achieved_flops'] / 1e12, 3), _num(r['model_flops'] / 1e12, 3),
            _num(r['memory'].get('peak_bytes', math.nan) / 2**20)])
    return _table(header, body)


def checks_table(rows: list[dict]) -> str:
    rows = [r for r in rows if r.get('checks')]
    if not rows:
        return ''
    names = [c['name'] for c in rows[0]['checks']]
    body = [[r['model'], *[f'{"pass" if c["passed"] else "FAIL"}: {c["detail"]}'
                           for c in r['checks']]] for r in rows]
    return _table(['model (train step)', *names], body)


def torch_table(jax_rows: dict[str, dict], torch_rows: list[dict]) -> str:
    header = ['model', 'PyTorch model', 'same params', 'mode', 'train img/s (p10-p90)',
              'eval img/s (p10-p90)', 'jaxconv / torch train', 'jaxconv / torch eval',
              'torch.compile s']
    body = []
    for r in torch_rows:
        ours = jax_rows.get(r['model'], {})
        same = ('yes' if r.get('params') == ours.get('params') else
                f'no: {_num(r.get("params"))}') if 'params' in r else '-'
        if 'error' in r:
            body.append([r['model'], r.get('source', '-'), same, r['mode'], r['error'],
                         '', '', '', ''])
            continue
        ratio = {key: ours[key]['img_per_sec'] / r[key]['img_per_sec'] if key in ours
                 else math.nan for key in ('train', 'eval')}
        compile_s = (f'{r["compile_train_s"]:.0f} / {r["compile_eval_s"]:.0f}'
                     if 'compile_train_s' in r else '-')
        body.append([r['model'], r['source'], same, r['mode'], _rate(r['train']),
                     _rate(r['eval']), _num(ratio['train'], 2), _num(ratio['eval'], 2),
                     compile_s])
    return _table(header, body)


def pipeline_table(rows: list[dict]) -> str:
    header = ['pipeline', 'RandAugment', 'cores', 'img/s', 'img/s per core', 'jaxconv / timm']
    timm = {r.get('randaugment'): r for r in rows if r['library'] == 'timm' and 'error' not in r}
    body = []
    for r in rows:
        if 'error' in r:
            body.append([r['library'], '-', str(r['cores']), r['error'], '', ''])
            continue
        other = timm.get(r['randaugment'])
        ratio = (r['img_per_sec_per_core'] / other['img_per_sec_per_core']
                 if r['library'] == 'jaxconv' and other else math.nan)
        name = 'jaxconv tf.data' if r['library'] == 'jaxconv' else 'timm PIL transforms'
        body.append([name, r['randaugment'], str(r['cores']), _num(r['img_per_sec'], 1),
                     _num(r['img_per_sec_per_core'], 1), _num(ratio, 2)])
    return _table(header, body)


def profile_table(jax_rows: list[dict], torch_rows: list[dict]) -> str:
    """Milliseconds per train step (and share) by kind of operation, JAX beside PyTorch."""
    from jaxconv.bench.profile import KINDS

    body = []
    for framework, rows in (('jaxconv (XLA)', jax_rows), ('PyTorch channels-last', torch_rows)):
        for r in rows:
            if r.get('profile'):
                cells = {p['kind']: f'{p["ms_per_call"]:,.0f} ({100 * p["share"]:.0f}%)'
                         for p in r['profile']}
                body.append([r['model'], framework, *[cells[k] for k in KINDS]])
    if not body:
        return ''
    return _table(['model', 'train step', *[f'{k}: ms (share)' for k in KINDS]], body)
