"""Settings of SpIEL-style sparse fine-tuning (Ansell et al., "Scaling Sparse Fine-Tuning to Large
Language Models", arXiv 2401.16405)."""

from __future__ import annotations

from dataclasses import dataclass

from ...validation import integer, number

REGROWTH = ("random", "probe")


@dataclass(frozen=True)
class SparseDeltaConfig:
    """Which entries of each weight matrix train, and how the set changes.

    Attributes:
        density: the fraction of each target matrix's entries that hold a trainable delta.
        every: steps between two updates of the index sets (SpIEL's R).
        drop: the fraction of each set dropped at an update: the smallest |delta| leave.
        regrowth: "random" (the freed entries go to random new indices, delta 0) or "probe" (a pool of
            `probes` candidate entries per matrix trains beside the set all along; at an update the
            candidates whose deltas moved most, |delta| being the sum of their ZO updates, take the
            freed places, and the rest of the pool is drawn afresh). ZO has no gradient to score
            candidates by (SpIEL's momentum or gradient regrowth): the probes' own ZO estimates are
            the score, at no extra forward pass.
        probes: candidates per matrix as a multiple of the entries dropped (regrowth "probe").
        targets: the Linear modules of each block that get deltas, by attribute path.
    """

    density: float = 0.01
    every: int = 50
    drop: float = 0.2
    regrowth: str = "random"
    probes: int = 2
    targets: tuple[str, ...] = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

    def __post_init__(self):
        number("density", self.density, minimum=0.0, strict=True, maximum=1.0, what="the fraction of entries that train")
        integer("every", self.every, minimum=1, what="steps between index-set updates")
        number("drop", self.drop, minimum=0.0, what="the fraction of each set dropped at an update")
        if self.drop >= 1:
            raise ValueError(f"drop: below 1 (a set cannot drop every entry), got {self.drop!r}")
        if self.regrowth not in REGROWTH:
            raise ValueError(f"regrowth: one of {', '.join(REGROWTH)}, got {self.regrowth!r}")
        integer("probes", self.probes, minimum=1, what="candidates per dropped entry")
