"""Benchmarks that pick architectures and budgets: `python -m jaxconv.bench` (`__main__.py`).

- `measure.py`: one model's parameters, multiply-adds, compile times, images/s of the trainer's
  train and eval steps and of a minimal hand-written step, FLOP/s and memory;
- `checks.py` (with `hlo.py`): the compiled-step checks;
- `torch_side.py`: the PyTorch counterpart, timed the same way;
- `profile.py`: where a train step's time goes, in JAX and in PyTorch;
- `input_pipeline.py` (with `jpeg_dataset.py`): input-pipeline images/s per CPU core, against
  timm's;
- `complexity.py` (with `published_top1.csv`): the complexity chart;
- `adapter.py`: the only file that touches the trainer's APIs;
- `report.py`: the Markdown tables.
"""
