"""Where a model lives: the device of its weights."""

from __future__ import annotations

from typing import Any


def model_device(model: Any):
    """The device the model's weights live on (CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    import torch

    return torch.device("cpu")
