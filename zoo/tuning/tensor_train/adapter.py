"""AdaZeta's bottleneck adapters of tensor trains, placed after the attention and MLP of each block.

Each adapter maps a block output h to h + U(relu(D(h))), with D (hidden -> bottleneck) and U (bottleneck ->
hidden) tensor-train matrices (`TTLinear`). D starts at AdaZeta's scale, W entries of std sqrt(1/(in+out));
U starts at zero (its last core), so an adapted model computes exactly what the pretrained one does until
a step moves it, as LoRA's B = 0 does. (AdaZeta's code draws both at random, which changes the model's
outputs before any training.) The adapter is registered as a child of the module it follows, and a forward
hook adds it to that module's output, so the model's own classes and forward stay as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import TTAdapterConfig, factorize
from .tt_linear import TTLinear

ATTRIBUTE = "tt_adapter"


class TTAdapter(nn.Module):
    def __init__(self, hidden: int, config: TTAdapterConfig, generator: torch.Generator, dtype=torch.float32):
        super().__init__()
        h, k = factorize(hidden, config.cores_per_side), factorize(config.bottleneck, config.cores_per_side)
        std = math.sqrt(1 / (hidden + config.bottleneck))  # AdaZeta's target_sdv
        self.down = TTLinear(h, k, config.rank, std=std, generator=generator, dtype=dtype)
        self.up = TTLinear(k, h, config.rank, std=std, zero_last=True, generator=generator, dtype=dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.down.bias.dtype)  # float32 adapters on a half-precision model
        return h + self.up(F.relu(self.down(x))).to(h.dtype)


def _add_adapter(module, args, output):
    adapter = getattr(module, ATTRIBUTE)
    if isinstance(output, tuple):  # attention returns (hidden states, weights, ...)
        return (adapter(output[0]), *output[1:])
    return adapter(output)


def add_tt_adapters(model: nn.Module, blocks: nn.ModuleList, config: TTAdapterConfig, seed: int = 0) -> int:
    """Freezes `model` and puts a trainable TT adapter after each target module of each block.

    Args:
        blocks: the model's transformer blocks (zoo.finetune.adapters.transformer_blocks).
        seed: the adapters' initialisation, drawn from a local generator.

    Returns:
        The number of adapters added.

    Raises:
        ValueError: a block lacks a target module, or the hidden size is not known.
    """
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(hidden, int):
        raise ValueError("tuning 'tt-adapter': the model's config has no hidden_size")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    count = 0
    for i, block in enumerate(blocks):
        for name in config.targets:
            target = getattr(block, name, None)
            if not isinstance(target, nn.Module):
                raise ValueError(f"tuning 'tt-adapter': block {i} ({type(block).__name__}) has no module {name!r}; "
                                 f"adapters follow {', '.join(config.targets)}")
            if hasattr(target, ATTRIBUTE):
                raise ValueError(f"tuning 'tt-adapter': block {i}'s {name} already has an adapter")
            # float32 adapters on half-precision models, as zoo keeps LoRA factors and prefixes
            adapter = TTAdapter(hidden, config, generator, dtype=torch.float32 if dtype != torch.float64 else dtype)
            target.add_module(ATTRIBUTE, adapter)
            target.register_forward_hook(_add_adapter)
            count += 1
    return count
