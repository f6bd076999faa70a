"""What a run costs, for its summary: multiply-adds, size and scaling of the model, and speed.

Studies draw accuracy against these (ResNet-RS Figure 1 plots top-1 against step time,
EfficientNet Figure 1 against FLOPs), so every run records them the same way.
"""

import flax.linen as nn

from jaxconv.models.flops import count_macs


def model_facts(model: nn.Module, image_size: int, channels: int) -> dict:
    """Multiply-adds of one image at the train resolution, and the model's scaling multipliers.

    A family without a multiplier field (LeNet, VGG, ...) is unscaled, so it reports 1.0.
    """
    return {
        'macs': count_macs(model, image_size, channels),
        'resolution': image_size,
        'depth_multiplier': float(getattr(model, 'depth_multiplier', 1.0)),
        'width_multiplier': float(getattr(model, 'width_multiplier', 1.0)),
    }


class Throughput:
    """Mean train images/s and ms/step over every log window except the first of each process.

    The first window after a start or a resume holds the train step's compile, which is a one-off
    cost, not speed. The totals live in the checkpoint's record, so a resumed run adds to them.
    """

    def __init__(self, record: dict):
        self.totals = record.setdefault('throughput', {'images': 0.0, 'seconds': 0.0, 'steps': 0})
        self._compiling = True

    def add_window(self, images: float, steps: int, seconds: float) -> None:
        if self._compiling:
            self._compiling = False
            return
        self.totals['images'] += images
        self.totals['seconds'] += seconds
        self.totals['steps'] += steps

    def summary(self) -> dict:
        """img_per_sec and ms_per_step; None when no window after the first was logged."""
        images, seconds, steps = (self.totals[k] for k in ('images', 'seconds', 'steps'))
        if not steps or seconds <= 0:
            return {'img_per_sec': None, 'ms_per_step': None}
        return {'img_per_sec': images / seconds, 'ms_per_step': 1000 * seconds / steps}
