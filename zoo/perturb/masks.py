"""Masks: which parameters, and which of their elements, a direction touches.

A mask changes *which* z is applied, never how a sweep runs, so sparse and
layer-wise variants are configurations of the same backend.
"""

from __future__ import annotations

import math

import torch

from .keys import mix
from .kernels import MASK_FROM_BITS, MASK_FROM_THETA, MASK_FROM_THETA_AND_KEEP
from .slots import ParamSlot

_LAYER_TAG = 0x1A7E


class LayerSubset:
    """Each step perturbs and updates a random subset of layers (LeZO).

    LeZO (Wang et al., "Simultaneous Computation and Memory Efficient
    Zeroth-Order Optimizer for Fine-Tuning Large Language Models",
    arXiv 2410.09823) samples, every step, a subset of transformer layers;
    z is zero on the others, so their perturb and update sweeps are skipped.

    Args:
        active_fraction: fraction of the repeated layers perturbed per step
            (at least one layer).
        always_active_outside_layers: parameters outside the repeated blocks
            (embeddings, final norm, heads) are perturbed every step.
    """

    def __init__(self, active_fraction: float = 0.25, always_active_outside_layers: bool = True):
        if not 0.0 < active_fraction <= 1.0:
            raise ValueError(f"active_fraction must be in (0, 1], got {active_fraction}")
        self.active_fraction = active_fraction
        self.always_active_outside_layers = always_active_outside_layers
        self._active: set[int] = set()
        self._num_layers = 0

    def begin_step(self, slots: list[ParamSlot], step_seed: int) -> None:
        layers = sorted({s.layer for s in slots if s.layer is not None})
        self._num_layers = len(layers)
        if not layers:
            self._active = set()
            return
        k = max(1, round(self.active_fraction * len(layers)))
        gen = torch.Generator().manual_seed(mix(step_seed, _LAYER_TAG))
        order = torch.randperm(len(layers), generator=gen)[:k].tolist()
        self._active = {layers[i] for i in order}

    def active(self, slot: ParamSlot) -> bool:
        if slot.layer is None:
            return self.always_active_outside_layers or self._num_layers == 0
        return slot.layer in self._active


def quantile_by_selection(values: torch.Tensor, q: float) -> float:
    """`torch.quantile(values, q)` of a 1-D float tensor, by two selections instead of a sort.

    With n values sorted as v_(0) <= ... <= v_(n-1), torch's linear interpolation is

        r = q (n - 1),  quantile = lerp(v_(floor r), v_(ceil r), r - floor r),

    with r computed in the tensor's dtype. `torch.kthvalue` finds each order
    statistic in O(n) where quantile sorts in O(n log n): 4.1x faster over the
    SmolLM2 config's 272 tensors (benchmarks/sparse_threshold_speed.py), and the
    same bits (tests/test_stream.py compares them), so a threshold, its masks and
    every committed run are unchanged.
    """
    n = values.numel()
    if values.dim() != 1 or n == 0:
        raise ValueError(f"quantile_by_selection needs a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    rank = torch.tensor(q, dtype=values.dtype) * (n - 1)
    below, above = int(torch.floor(rank)), int(torch.ceil(rank))
    low = torch.kthvalue(values, below + 1).values
    high = low if above == below else torch.kthvalue(values, above + 1).values
    return torch.lerp(low, high, rank - below).item()


class MagnitudeMask:
    """Perturb and update only the small-magnitude weights (Sparse MeZO).

    Sparse MeZO (Liu et al., "Sparse MeZO: Less Parameters for Better
    Performance in Zeroth-Order LLM Fine-Tuning", arXiv 2402.15751) sets, per
    parameter, a threshold tau = quantile(|theta|, 1 - sparsity) once before
    training, then at every step perturbs only the elements with
    |theta| < tau. The mask is recomputed from the weights on the fly.

    Two tensors get tau = inf, that is, are perturbed densely. With sparsity 0,
    quantile 1 is max|theta|, and |theta| < max would leave the largest
    elements out. And a tensor whose threshold comes out 0 (at least a fraction
    1 - sparsity of its entries exactly zero: a zero-initialised classification
    head, LoRA's B) would never move, since no |theta| < 0 and tau is fixed;
    with LoRA the whole adapter would stay at its identity. The paper's premise,
    small pretrained weights matter less, says nothing about such tensors.

    Within a step every sweep must see the mask of theta, the unperturbed
    weights. With exact perturbation the weights are at theta whenever a sweep
    runs. With in-place perturbation they are not after the first sweep, so the
    first sweep of a step packs the mask into bits (1/32 of float32 parameter
    bytes), read by the later sweeps of the same step and dropped at its end.

    Args:
        sparsity: fraction of each parameter's elements left untouched.
        sample_size: elements of a strided sample used to estimate tau.
    """

    def __init__(self, sparsity: float = 0.75, sample_size: int = 1 << 20):
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.sparsity = sparsity
        self.sample_size = sample_size
        self.thresholds: dict[int, float] = {}
        self._bits: dict[int, torch.Tensor] = {}
        self._cache = False

    def begin_step(self, slots: list[ParamSlot], cache: bool) -> None:
        for slot in slots:
            if slot.uid not in self.thresholds:
                self.thresholds[slot.uid] = self._threshold(slot.flat())
        self._cache = cache
        self._bits = {}
        if cache:
            for slot in slots:
                self._bits[slot.uid] = torch.empty(
                    math.ceil(slot.numel / 8), dtype=torch.uint8, device=slot.param.device
                )

    def end_step(self) -> None:
        self._bits = {}

    def sample(self, flat: torch.Tensor) -> torch.Tensor:
        """|theta| on a strided sample of at most about `sample_size` elements, in float32: what tau is a quantile of."""
        return flat[:: max(1, flat.numel() // self.sample_size)].detach().abs().float()

    def _threshold(self, flat: torch.Tensor) -> float:
        if self.sparsity == 0.0:
            return math.inf
        tau = quantile_by_selection(self.sample(flat), 1.0 - self.sparsity)
        return math.inf if tau == 0.0 else tau  # see the class docstring: tau = 0 would freeze the tensor

    def mask(self, slot: ParamSlot, start: int, theta: torch.Tensor, at_theta: bool) -> torch.Tensor:
        """Boolean mask of elements [start, start + len(theta)) of the parameter.

        Args:
            theta: the parameter's current values on that range.
            at_theta: whether the weights are at theta (no perturbation applied).
        """
        tau, bits, mode = self.kernel_args(slot, at_theta)
        if mode == MASK_FROM_BITS:
            return _unpack(bits, start, theta.numel())
        m = theta.abs() < tau
        if mode == MASK_FROM_THETA_AND_KEEP:
            _pack_into(bits, start, m)
        return m

    def kernel_args(self, slot: ParamSlot, at_theta: bool) -> tuple[float, torch.Tensor | None, int]:
        """(tau, bits, mode): where this step's mask of `slot` comes from, for `mask` and the fused kernels.

        mode is MASK_FROM_THETA (compare |theta| with tau), MASK_FROM_THETA_AND_KEEP
        (compare and pack into bits) or MASK_FROM_BITS (the weights are perturbed).
        """
        tau = self.thresholds[slot.uid]
        if at_theta:
            return (tau, self._bits[slot.uid], MASK_FROM_THETA_AND_KEEP) if self._cache else (tau, None, MASK_FROM_THETA)
        if not self._cache:
            raise RuntimeError("MagnitudeMask: weights are perturbed but no mask was cached for this step")
        return tau, self._bits[slot.uid], MASK_FROM_BITS

    def state_dict(self) -> dict:
        return {"thresholds": dict(self.thresholds)}

    def load_state_dict(self, state: dict) -> None:
        self.thresholds = {int(k): float(v) for k, v in state["thresholds"].items()}


_SHIFTS = {}


def _shifts(device) -> torch.Tensor:
    if device not in _SHIFTS:
        _SHIFTS[device] = torch.arange(8, dtype=torch.uint8, device=device)
    return _SHIFTS[device]


def _pack_into(bits: torch.Tensor, start: int, mask: torch.Tensor) -> None:
    # start is a multiple of the block size, hence of 8; pad only the tail.
    n = mask.numel()
    padded = torch.nn.functional.pad(mask.to(torch.uint8), (0, (-n) % 8))
    packed = (padded.view(-1, 8) << _shifts(mask.device)).sum(1, dtype=torch.uint8)
    bits[start // 8 : start // 8 + packed.numel()] = packed


def _unpack(bits: torch.Tensor, start: int, n: int) -> torch.Tensor:
    packed = bits[start // 8 : start // 8 + math.ceil(n / 8)]
    return ((packed.unsqueeze(1) >> _shifts(bits.device)) & 1).view(-1)[:n].bool()
