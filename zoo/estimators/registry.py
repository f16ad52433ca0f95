"""The estimator registry: look estimators up by kebab-case name."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def directions(step: int = 0, **hyper) -> int:
    """Directions at `step`: the hyper-parameters' n, or their AdaZeta query schedule's n(step)."""
    from .schedule import QuerySchedule

    schedule = QuerySchedule.coerce(hyper.get("query_schedule"))
    return schedule(step) if schedule is not None else hyper.get("n", 1)


def two_per_direction(step: int = 0, **hyper) -> int:
    """The forward passes of a two-point estimator at `step`: 2 per direction."""
    return 2 * directions(step, **hyper)


@dataclass(frozen=True)
class EstimatorSpec:
    """What the registry knows about one estimator.

    Attributes:
        name: kebab-case name.
        factory: callable(model_or_params, **hyper) -> torch.optim.Optimizer.
        description: one line.
        defaults: hyper-parameters the factory is called with unless overridden.
        forwards: callable(step, **hyper) -> forward passes at that step (a jvp pass counts one).
        extra_state: parameter-sized state kept besides the weights.
        paper: citation.
        cost: the forwards per step as a formula for tables ("2n", "n + 1", ...).
        period: callable(**hyper) -> steps after which the cost repeats (MeZO-SVRG: q).
    """

    name: str
    factory: Callable
    description: str
    defaults: dict = field(default_factory=dict)
    forwards: Callable[..., int] = two_per_direction
    extra_state: str = "none"
    paper: str = ""
    cost: str = "2n"
    period: Callable[..., int] = lambda **hyper: 1

    def options(self) -> list[str]:
        """The keyword options the factory takes, its base classes' included (sorted)."""
        import inspect

        names, kinds = [], (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        classes = self.factory.__mro__ if isinstance(self.factory, type) else (self.factory,)
        for cls in classes:
            fn = cls.__init__ if isinstance(cls, type) else cls
            if fn is object.__init__:
                break
            params = inspect.signature(fn).parameters.values()
            names += [p.name for p in params if p.kind in kinds]
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                break
        # set by the estimator classes themselves, or the positional model
        return sorted(set(names) - {"self", "model_or_params", "defaults", "rule"})

    def forwards_per_step(self, **hyper) -> float:
        """Forward passes per step, averaged over one period of the plan (an int where it is fixed)."""
        period = self.period(**hyper)
        mean = sum(self.forwards(t, **hyper) for t in range(period)) / period
        return int(mean) if mean == int(mean) else mean

    def forwards_for(self, steps: int, **hyper) -> int:
        """Forward passes of the first `steps` steps."""
        return sum(self.forwards(t, **hyper) for t in range(steps))

    def steps_within(self, budget: int, **hyper) -> int:
        """The most steps whose forward passes fit in `budget` (at least 1)."""
        steps, spent = 0, 0
        while spent + self.forwards(steps, **hyper) <= budget:
            spent += self.forwards(steps, **hyper)
            steps += 1
        return max(steps, 1)


_REGISTRY: dict[str, EstimatorSpec] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, factory: Callable, *, description: str, defaults: dict | None = None,
             forwards: Callable[..., int] | None = None, extra_state: str = "none", paper: str = "",
             cost: str = "2n", period: Callable[..., int] | None = None,
             aliases: tuple[str, ...] = (), overwrite: bool = False) -> EstimatorSpec:
    """Registers an estimator under a kebab-case name.

    Args:
        forwards: callable(step, **hyper) -> forward passes at that step; default 2n (n(step)
            under a query schedule).
        cost: the same as a formula, for tables.
        period: callable(**hyper) -> the steps after which `forwards` repeats (default 1).

    Raises:
        ValueError: the name is not kebab-case, or is taken and overwrite is False.
    """
    for n in (name, *aliases):
        if not _NAME.match(n):
            raise ValueError(f"name: estimator names are kebab-case (e.g. 'my-estimator'), got {n!r}")
        if not overwrite and (n in _REGISTRY or n in _ALIASES):
            raise ValueError(f"name: {n!r} is already registered; pass overwrite=True to replace it")
    entry = EstimatorSpec(
        name, factory, description, dict(defaults or {}), forwards or two_per_direction, extra_state, paper, cost,
        period or (lambda **hyper: 1),
    )
    _REGISTRY[name] = entry
    for alias in aliases:
        _ALIASES[alias] = name
    return entry


def available() -> list[str]:
    """Sorted names of every registered estimator (aliases excluded)."""
    return sorted(_REGISTRY)


def aliases() -> dict[str, str]:
    return dict(_ALIASES)


def resolve(name: str) -> EstimatorSpec:
    """The spec for a name or alias; ValueError with the closest match otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"name: expected a string, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, [*_REGISTRY, *_ALIASES], n=1, cutoff=0.4)
    hint = f" Did you mean {_ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ValueError(f"unknown estimator {name!r}.{hint} Known: {', '.join(available())}")


#: Public name of `resolve`: the registered spec of a name or alias.
spec = resolve


def get(name: str, model_or_params, **hyper):
    """Builds the estimator `name` over a model or parameters.

    Args:
        name: a registered name or alias (see `available()`).
        model_or_params: nn.Module, parameters, or param groups.
        **hyper: hyper-parameters (lr, eps, seed, n, perturbation, ...),
            overriding the registered defaults.
    """
    s = resolve(name)
    unknown = sorted(set(hyper) - set(s.options()))
    if unknown:
        raise ValueError(f"{s.name}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"it takes {', '.join(s.options())}")
    opt = s.factory(model_or_params, **{**s.defaults, **hyper})
    opt.registry_name = s.name
    return opt
