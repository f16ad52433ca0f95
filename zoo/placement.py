"""Where a run's model lives and in what precision: the `--device` and `--dtype` of the command line.

Pretrained weights are loaded in `dtype`. What zoo or peft adds to them stays float32: an
encoder's new classification head (`PooledClassifier`), LoRA factors and prefixes (peft casts
adapters up by default). So a half-precision LoRA, prefix or encoder-head run trains float32
pieces on a half-precision model, while full fine-tuning, and the `score` head that a decoder's
*ForSequenceClassification class brings, train in `dtype` itself. ZO estimators perturb half-precision weights
with `perturbation="exact"` unless told otherwise (`zoo.perturb.default_perturbation`): at
eps = 1e-3 the way back by subtraction drifts by whole ulps every step (docs/drift.md).
"""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype named `name` (one of DTYPES)."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def parse_device(name: str) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:N") as a torch.device, else a ValueError; whether this machine has it
    is `checked_device`'s question."""
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except (RuntimeError, TypeError):
        device = None
    if device is None:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use cpu, cuda or cuda:N")
    return device


def checked_device(name: str) -> torch.device:
    """`name` as a torch.device this machine has ("cpu", "cuda", "cuda:N"), else a ValueError that says why."""
    device = parse_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: torch sees no CUDA device here (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (zoo keeps a model on one device)."""
    return next(model.parameters()).device
