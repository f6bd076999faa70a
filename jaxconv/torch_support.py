"""Importing the PyTorch reference libraries (torch, torchvision, timm) next to TensorFlow.

They are an optional extra (`pip install -e '.[torch]'`): weight import, logits parity tests and
the `--compare torch` benchmark use them; training never does. Import them through
`import_torch()` so that a missing extra fails with one line that says what to install.
"""

import sys
import types


def import_torch() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """(torch, torchvision, timm), importable in a process that has already loaded TensorFlow.

    Triton (a dependency of the CUDA torch wheels) segfaults at import when TensorFlow was loaded
    first: both bundle LLVM (seen with tensorflow-cpu 2.21, torch 2.14.1, triton 3.x). torch
    imports triton only to offer GPU kernels for torch.compile, so after TensorFlow we hide it;
    torch then treats it as absent. Import torch before TensorFlow to keep triton.
    """
    if 'tensorflow' in sys.modules and 'triton' not in sys.modules:
        sys.modules['triton'] = None  # Makes `import triton` raise ImportError.
    try:
        import timm
        import torch
        import torchvision
    except ImportError as error:
        raise ImportError(f'{error.name or "torch"} is not installed; it is part of the optional '
                          "reference libraries: pip install -e '.[torch]'") from error
    return torch, torchvision, timm
