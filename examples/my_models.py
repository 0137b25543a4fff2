"""A model factory for `exante profile examples/my_models.py:make_net ...` (and predict,
features, estimate): any function that returns an ``nn.Module`` works."""

from torch import nn


def make_net() -> nn.Module:
    """A small CNN for 3x32x32 images (CIFAR-10 sized), 10 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10))
