"""Counter-based seeds for directions.

A direction z is never stored. It is a pure function of

    (step seed, direction index j, parameter uid, block index)

so every sweep of a step regenerates the same z, whatever the chunk size, the
thread that processes a block, or the order in which parameters are visited.
Nothing here reads or writes torch's global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

_MASK64 = (1 << 64) - 1

#: Elements per independently seeded block: a constant of the noise stream.
#: Changing it changes every z, so it is part of the stream's definition.
BLOCK_SIZE = 1 << 16


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix(*words: int) -> int:
    """Hashes integers into one 63-bit seed (SplitMix64 chained over the words)."""
    h = 0x5EED
    for w in words:
        h = _splitmix64(h ^ (int(w) & _MASK64))
    return h >> 1


@dataclass(frozen=True)
class DirectionKey:
    """Names one random direction: the j-th direction of the step with `seed`."""

    seed: int
    index: int = 0

    def block_seed(self, uid: int, block: int) -> int:
        """Seed of `block` (of BLOCK_SIZE elements) of the parameter with `uid`."""
        return mix(self.seed, self.index, uid, block)

    def tagged_seed(self, uid: int, tag: int) -> int:
        """Seed for per-parameter draws that are not elementwise (e.g. SubZero's Z)."""
        return mix(self.seed, self.index, uid, -1 - tag)


def step_seed(base_seed: int, step: int) -> int:
    """The seed of optimizer step `step` for an optimizer created with `base_seed`."""
    return mix(base_seed, step)
