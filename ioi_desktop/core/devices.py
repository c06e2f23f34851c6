"""Where a loaded model lives, for code that must put tensors next to it.

A small module of its own so that both the runner and the analyses can use it
without importing each other (analyses sit below the runner).
"""

from __future__ import annotations

from typing import Any


def model_device(model: Any):
    """The ``torch.device`` of the model's first parameter (CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    import torch

    return torch.device("cpu")
