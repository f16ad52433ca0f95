"""Distributions of the random direction z, filled block by block.

Each sampler fills one block from a private `torch.Generator` that the caller
seeded from the block's key, so draws are reproducible and never touch torch's
global RNG.
"""

from __future__ import annotations

import torch


class Sampler:
    """Base class: i.i.d. draws with E[z] = 0 and E[z z^T] = I.

    Attributes:
        name: registry-facing name of the distribution.
        distribution: the elementwise draw a counter-based stream makes
            (`gaussian` or `rademacher`); `sphere` rescales gaussian draws.
        normalized: True when z is rescaled to a fixed global norm, which needs
            one extra generation pass per direction to measure the raw norm.
    """

    name = "base"
    distribution = "gaussian"
    normalized = False

    def fill_(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Gaussian(Sampler):
    """z ~ N(0, I): MeZO's default (Malladi et al., 2023, Algorithm 1)."""

    name = "gaussian"

    def fill_(self, out, generator):
        return out.normal_(generator=generator)


class Rademacher(Sampler):
    """z uniform on {-1, +1}^d: Spall's original SPSA perturbation."""

    name = "rademacher"
    distribution = "rademacher"

    def fill_(self, out, generator):
        return out.random_(0, 2, generator=generator).mul_(2).sub_(1)


class Sphere(Gaussian):
    """z uniform on the sphere of radius sqrt(d): z = sqrt(d) g / ||g||, g ~ N(0, I).

    The norm is taken over every element the direction touches (all active
    parameters), which costs one extra generation pass per direction.
    MeZO (Malladi et al., 2023) analyses this variant next to the Gaussian one.
    """

    name = "sphere"
    normalized = True


SAMPLERS = {cls.name: cls for cls in (Gaussian, Rademacher, Sphere)}


def make_sampler(spec: "str | Sampler") -> Sampler:
    """Returns a sampler from a name (`gaussian`, `rademacher`, `sphere`) or instance."""
    if isinstance(spec, Sampler):
        return spec
    if spec not in SAMPLERS:
        raise ValueError(f"sampler: unknown distribution {spec!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[spec]()
