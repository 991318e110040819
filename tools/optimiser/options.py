"""How :func:`tools.optimiser.propose` models and acquires: its typed options, recorded with each call.

The defaults are the optimiser a campaign runs. A variant (another kernel, warped inputs, winsorised
targets, the upper confidence bound instead of qLogNEI) is asked for by passing options, never by
replacing the optimiser's functions at run time. A campaign records :meth:`OptimiserOptions.recorded`
with each optimiser call, which is empty for the defaults, so that runs recorded without options
replay unchanged.

Two options take functions, for benchmarks and tests: the hyperparameter fit (``fit_gpytorch_mll``)
and the acquisition maximiser (``optimize_acqf``), each with the signature of BoTorch's function of
that name. They cannot be recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import botorch.fit
import botorch.optim
from pydantic import BaseModel, ConfigDict, model_validator

from athanor.errors import SpecError
from tools.optimiser.models import Kernel

__all__ = ["FUNCTION_OPTIONS", "MODEL_OPTIONS", "OptimiserOptions"]

#: Options that change the model or the acquisition (recorded when not the default).
MODEL_OPTIONS = ("kernel", "warp", "winsorise", "acquisition", "beta")
#: Options that replace one of BoTorch's functions (never recorded).
FUNCTION_OPTIONS = ("fit_gpytorch_mll", "optimize_acqf")


class OptimiserOptions(BaseModel):
    """The model and acquisition of :func:`tools.optimiser.propose`.

    Attributes:
        kernel: The GP's kernel: ``"rbf"`` (BoTorch's default, ARD) or ``"matern"`` (Matérn-5/2, ARD).
        warp: Warp the GP's inputs (a learnt monotone stretch of each component).
        winsorise: Clip the bad tail of the targets at Tukey's lower fence (Ax's default).
        acquisition: ``"qlognei"`` (batch noisy expected improvement) or ``"ucb"`` (the Monte-Carlo
            upper confidence bound ``mean + sqrt(beta) * std``).
        beta: Exploration weight of ``"ucb"``; None takes
            :data:`tools.optimiser.acquisitions.UCB_BETA`.
        fit_gpytorch_mll: Fits the GP's hyperparameters (BoTorch's function of that name by default).
        optimize_acqf: Maximises the acquisition (BoTorch's function of that name by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernel: Kernel = "rbf"
    warp: bool = False
    winsorise: bool = False
    acquisition: Literal["qlognei", "ucb"] = "qlognei"
    beta: float | None = None
    fit_gpytorch_mll: Callable[..., Any] = botorch.fit.fit_gpytorch_mll
    optimize_acqf: Callable[..., Any] = botorch.optim.optimize_acqf

    @model_validator(mode="after")
    def _check_beta(self) -> OptimiserOptions:
        if self.beta is None:
            return self
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(
                f"beta={self.beta} must be a finite number >= 0 (e.g. 4 for two standard deviations)"
            )
        if self.acquisition != "ucb":
            raise ValueError(
                f"beta={self.beta} weighs the upper confidence bound; set acquisition='ucb' or drop beta"
            )
        return self

    def changed(self) -> list[str]:
        """The model and acquisition options that differ from the defaults, in :data:`MODEL_OPTIONS` order."""
        return [name for name in MODEL_OPTIONS if getattr(self, name) != _default(name)]

    def recorded(self) -> dict[str, Any]:
        """The options that differ from the defaults, as JSON-ready data (empty for the defaults).

        Raises:
            ValueError: A function option is set; a run that records its optimiser calls cannot
                record a function.
        """
        replaced = [name for name in FUNCTION_OPTIONS if getattr(self, name) is not _default(name)]
        if replaced:
            raise ValueError(
                f"options {', '.join(replaced)} replace BoTorch functions and cannot be recorded; a campaign"
                " takes only the model and acquisition options"
            )
        return {name: getattr(self, name) for name in self.changed()}

    def refuse_model_options(self, where: str) -> None:
        """Refuse every changed model or acquisition option: they apply only to the continuous GP.

        Args:
            where: The path that cannot honour them, e.g. ``"a spec with several objectives"``.

        Raises:
            SpecError: Naming each changed option and the fix.
        """
        changed = self.changed()
        if changed:
            given = ", ".join(f"{name}={getattr(self, name)!r}" for name in changed)
            raise SpecError(
                f"optimiser options {given} apply to the Gaussian process of one objective on a continuous"
                f" space; {where} does not use them: drop them"
            )


def _default(name: str) -> Any:
    """The default value of option ``name``."""
    return OptimiserOptions.model_fields[name].default
