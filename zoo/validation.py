"""One check for every numeric option, so that the API, the config and the CLI refuse the same values
with the same words.

A bool is refused where a number is asked for (Python counts True as 1, which would make `lr=True`
an lr of 1), and so are NaN and infinities, which a step would turn into non-finite weights.
"""

from __future__ import annotations

import math
import numbers


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    try:  # a 0-d tensor, as LR schedulers sometimes store
        import torch

        return (torch.is_tensor(value) and value.numel() == 1 and not value.is_complex()
                and value.dtype != torch.bool)
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False


def number(name: str, value, *, minimum: float | None = None, strict: bool = False,
           maximum: float | None = None, what: str = "") -> float:
    """`value` as a float, or a ValueError naming `name` unless it is a finite real number in range.

    Args:
        minimum: the smallest value allowed (excluded when `strict`).
        maximum: the largest value allowed (included).
        what: what the value is, for the message ("the perturbation scale").
    """
    # checked at every ZO step: the message is built only for a value that fails
    v = float(value) if _is_number(value) else math.nan
    if (math.isfinite(v) and (minimum is None or v > minimum or (not strict and v == minimum))
            and (maximum is None or v <= maximum)):
        return v
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum:g}"
    if maximum is not None:
        bound += f"{' and' if bound else ''} <= {maximum:g}"
    raise ValueError(f"{name}: {what + ' ' if what else ''}must be a finite number{bound}, got {value!r}")


def integer(name: str, value, *, minimum: int | None = None, what: str = "", note: str = "") -> int:
    """`value` as an int, or a ValueError naming `name` unless it is an integer (not a bool) >= minimum.

    `note` follows the bound in the message ("0: a tenth of the steps").
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name}: {what + ' ' if what else ''}must be an integer{bound}"
                         f"{' (' + note + ')' if note else ''}, got {value!r}")
    return int(value)
