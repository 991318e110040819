"""What the optimiser's models learn from, without torch: the usable-observation rule and the log rule.

Both rules are shared by every strategy of :mod:`tools.optimiser` and by the advice on a cheap source
(:mod:`tools.budget`), which must not load torch to judge it; they live here so that each is written
once.

Values are modelled on a log scale when they share a sign and their magnitudes span more than a
decade (:data:`LOG_SPAN`); negative values are modelled as ``-log(-y)``, which keeps the order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from athanor.models import Observation

__all__ = ["LOG_SPAN", "is_usable", "log_sign", "signed_logs"]

#: Values are modelled on a log scale when they share a sign and ``max(|y|) / min(|y|)`` exceeds this.
LOG_SPAN = 10.0


def log_sign(values: Sequence[float], log_transform: bool | None = None) -> float:
    """The sign ``s`` of the log scale for ``values`` (modelled as ``s * log(s * y)``), or 0 for none.

    Args:
        values: The measured values, in their unit.
        log_transform: Force (True) or forbid (False) the log scale; None uses it when every value
            has the same sign and their magnitudes span more than :data:`LOG_SPAN`. Values of mixed
            sign (or none at all) are never logged.

    Returns:
        +1 (all positive, logged), -1 (all negative, logged) or 0 (modelled as they are).
    """
    if not values:
        return 0.0
    sign = 1.0 if all(v > 0 for v in values) else -1.0 if all(v < 0 for v in values) else 0.0
    if log_transform is None:
        magnitudes = [abs(v) for v in values]
        log = bool(sign) and max(magnitudes) / min(magnitudes) > LOG_SPAN
    else:
        log = log_transform and bool(sign)
    return sign if log else 0.0


def signed_logs(values: Sequence[float], log: bool) -> list[float]:
    """``copysign(log|v|, v)`` of each value when ``log``, else the values (the cheap-source advice's scale).

    Unlike the models' ``-log(-y)``, this does not keep the order of negative values on both sides
    of -1; the advice and the multi-fidelity model use it on values that share a sign.
    """
    return [math.copysign(math.log(abs(v)), v) for v in values] if log else list(values)


def is_usable(observation: Observation, names: Iterable[str], components: Iterable[str]) -> bool:
    """Whether a model may learn from ``observation``.

    Args:
        observation: A measured (or prior) observation.
        names: The quantities the model needs (the objectives, constrained quantities).
        components: The components whose amounts are the model's inputs.

    Returns:
        True when its status is ``ok``, every named value is present and finite and every component
        has a finite amount.
    """
    if observation.status != "ok":
        return False
    for name in names:
        value = observation.values.get(name)
        if value is None or not math.isfinite(value):
            return False
    return all(
        (amount := observation.composition.get(c)) is not None and math.isfinite(amount) for c in components
    )
