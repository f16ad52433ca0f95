"""The perturbation backend: directions regenerated from seeds, applied in place.

Public pieces:
    DirectionKey, BLOCK_SIZE, mix, step_seed   -- the counter-based noise stream
    Gaussian, Rademacher, Sphere, make_sampler -- distributions of z
    LayerSubset, MagnitudeMask                 -- masks (LeZO, Sparse MeZO)
    LowRankSubspace                            -- SubZero directions
    DirectionField                             -- sampler + masks + subspace
    TorchBackend, CpuBackend, TritonBackend,
    make_backend                               -- chunked execution: torch generators,
                                                  or the Philox stream (C / Triton kernels)
    GeneratorStream, PhiloxStream              -- what the values of z are
    apply_, direction_chunk, perturbed_copy    -- sweeps (in place, or into a copy)
    InplacePerturbation, ExactPerturbation     -- the two ways back (blocked.py: exact-mode
                                                  forwards of large Linear/Embedding in row blocks)
    BatchedPerturbation                        -- every point of a step in one vmapped forward (P-RGE)
    default_perturbation                       -- which of them when none is asked for
"""

from .batched import BatchedPerturbation
from .backend import CpuBackend, TorchBackend, TritonBackend, Workspace, make_backend
from .field import DirectionField
from .keys import BLOCK_SIZE, DirectionKey, mix, step_seed
from .masks import LayerSubset, MagnitudeMask
from .modes import ExactPerturbation, InplacePerturbation, default_perturbation
from .samplers import Gaussian, Rademacher, Sampler, Sphere, make_sampler
from .slots import ParamSlot
from .streams import GeneratorStream, PhiloxStream
from .subspace import LowRankProduct, LowRankSubspace
from .sweeps import apply_, direction_chunk, measure_sphere_scale, perturbed_copy

__all__ = [
    "BatchedPerturbation",
    "BLOCK_SIZE",
    "CpuBackend",
    "GeneratorStream",
    "PhiloxStream",
    "TritonBackend",
    "DirectionField",
    "DirectionKey",
    "ExactPerturbation",
    "Gaussian",
    "InplacePerturbation",
    "default_perturbation",
    "LayerSubset",
    "LowRankProduct",
    "LowRankSubspace",
    "MagnitudeMask",
    "ParamSlot",
    "Rademacher",
    "Sampler",
    "Sphere",
    "TorchBackend",
    "Workspace",
    "apply_",
    "direction_chunk",
    "make_backend",
    "make_sampler",
    "measure_sphere_scale",
    "perturbed_copy",
    "mix",
    "step_seed",
]
