"""Placing sparse deltas on a model, and SpIEL's drop-and-regrow of their index sets.

SpIEL (Ansell et al. 2024, arXiv 2401.16405, Algorithm 1) keeps k entries per matrix; every R steps it
drops the entries whose deltas are smallest in magnitude and regrows as many elsewhere. Every draw here
comes from a generator keyed by (seed, step, matrix number), so a run, its resume and its replay from
the loss log draw the same index sets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...perturb.keys import mix
from .config import SparseDeltaConfig
from .delta import ATTRIBUTE, SparseDelta, _add_delta

#: A salt that keeps these draws apart from any other use of the run's seed.
_SALT = 0x5D


def _fresh(count: int, size: int, taken: set[int], generator: torch.Generator) -> list[int]:
    """`count` distinct entries of range(size) outside `taken`, in the order drawn."""
    if count > size - len(taken):
        raise ValueError(f"tuning 'sparse-delta': {count} new entries do not fit in a matrix of {size} with "
                         f"{len(taken)} taken; lower density or drop")
    out: list[int] = []
    while len(out) < count:
        for i in torch.randint(0, size, (2 * (count - len(out)) + 8,), generator=generator).tolist():
            if i not in taken:
                taken.add(i)
                out.append(i)
                if len(out) == count:
                    break
    return out


def _generator(seed: int, step: int, number: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix(_SALT, seed, step, number))


def dropped_per_update(count: int, config: SparseDeltaConfig) -> int:
    return math.floor(config.drop * count)


def add_sparse_deltas(model: nn.Module, blocks: nn.ModuleList, config: SparseDeltaConfig, seed: int = 0) -> int:
    """Freezes `model` and gives each target Linear of each block a trainable `SparseDelta`.

    Returns:
        The number of trainable entries (probes included).

    Raises:
        ValueError: a block lacks a target Linear, or one already has deltas.
    """
    model.requires_grad_(False)
    total = 0
    number = 0
    for b, block in enumerate(blocks):
        for path in config.targets:
            target = block.get_submodule(path) if _has(block, path) else None
            if not isinstance(target, nn.Linear):
                raise ValueError(f"tuning 'sparse-delta': block {b} ({type(block).__name__}) has no Linear {path!r}; "
                                 f"deltas go on {', '.join(config.targets)}")
            if hasattr(target, ATTRIBUTE):
                raise ValueError(f"tuning 'sparse-delta': block {b}'s {path} already has deltas")
            size = target.weight.numel()
            count = max(1, round(config.density * size))
            probes = config.probes * max(1, dropped_per_update(count, config)) if config.regrowth == "probe" else 0
            taken: set[int] = set()
            drawn = _fresh(count + probes, size, taken, _generator(seed, -1, number))
            dtype = torch.float64 if target.weight.dtype == torch.float64 else torch.float32
            delta = SparseDelta(tuple(target.weight.shape), torch.tensor(drawn[:count]), torch.tensor(drawn[count:],
                                dtype=torch.long), dtype=dtype).to(target.weight.device)
            delta.number, delta.config, delta.seed = number, config, seed
            target.add_module(ATTRIBUTE, delta)
            target.register_forward_hook(_add_delta)
            total += count + probes
            number += 1
    return total


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def sparse_deltas(model: nn.Module) -> list[SparseDelta]:
    return [m for m in model.modules() if isinstance(m, SparseDelta)]


@torch.no_grad()
def update_index_sets(model: nn.Module, step: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
    """After step `step` (0-based): every `every` steps, drop and regrow each matrix's entries.

    Dropped: the `drop` fraction of the set with the smallest |delta| (ties: the earlier position).
    Regrown: random new entries with delta 0, or (regrowth "probe") the candidates whose deltas moved
    most, keeping their deltas; the whole candidate pool is then drawn afresh at delta 0. Entries of
    the optimizer's state (moments) at recycled positions are zeroed. Returns whether sets changed.
    """
    changed = False
    for delta in sparse_deltas(model):
        config = delta.config
        if (step + 1) % config.every:
            continue
        m = dropped_per_update(delta.values.numel(), config)
        if m == 0:
            continue
        magnitude = delta.values.detach().abs().double().cpu().tolist()
        out = sorted(range(len(magnitude)), key=lambda i: (magnitude[i], i))[:m]
        size = delta.shape[0] * delta.shape[1]
        taken = set(delta.index.tolist()) | set(delta.probe_index.tolist())
        generator = _generator(delta.seed, step, delta.number)
        positions = torch.tensor(out, device=delta.index.device)
        if config.regrowth == "random":
            delta.index[positions] = torch.tensor(_fresh(m, size, taken, generator), device=delta.index.device)
            delta.values[positions] = 0
        else:
            pool = delta.probe_values.detach().abs().double().cpu().tolist()
            best = sorted(range(len(pool)), key=lambda i: (-pool[i], i))[:m]
            chosen = torch.tensor(best, device=delta.index.device)
            delta.index[positions] = delta.probe_index[chosen]
            delta.values[positions] = delta.probe_values[chosen]
            taken = set(delta.index.tolist())  # the new pool may hold entries the set just dropped
            delta.probe_index.copy_(torch.tensor(_fresh(delta.probe_index.numel(), size, taken, generator),
                                                 device=delta.index.device))
            delta.probe_values.zero_()
            _forget(optimizer, delta.probe_values, None)
        _forget(optimizer, delta.values, positions)
        changed = True
    return changed


def _forget(optimizer, param: torch.Tensor, positions: torch.Tensor | None) -> None:
    """Zeroes the optimizer's per-element state of `param` (at `positions`, or everywhere)."""
    if optimizer is None:
        return
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            if positions is None:
                value.zero_()
            else:
                value[positions] = 0


class IndexSetUpdates:
    """Runs `update_index_sets` after every step of `optimizer` (a torch step post-hook), so that live
    steps, `replay` from a loss log and first-order steps all change the sets at the same steps.

    Attributes:
        steps_done: steps taken so far; set it to the checkpoint's step when resuming from one.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, steps_done: int = 0):
        self.model, self.steps_done = model, steps_done
        self.handle = optimizer.register_step_post_hook(self)

    def __call__(self, optimizer, args, kwargs) -> None:
        update_index_sets(self.model, self.steps_done, optimizer)
        self.steps_done += 1


def index_set_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The index sets of every SparseDelta, by buffer name (what a checkpoint adds to the trained tensors)."""
    deltas = {id(m) for m in sparse_deltas(model)}
    return {f"{name}.{b}": t.detach() for name, m in model.named_modules() if id(m) in deltas
            for b, t in m.named_buffers(recurse=False)}
