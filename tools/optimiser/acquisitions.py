"""The acquisition functions the strategies maximise, built from a fitted model.

- One objective: ``qLogNoisyExpectedImprovement`` (qLogNEI, batch noisy expected improvement with
  pruned baseline) or the Monte-Carlo upper confidence bound ``qUpperConfidenceBound`` (``mean +
  sqrt(beta) * std`` on the model's standardised scale), both on quasi-Monte-Carlo samples.
- Several objectives and outcome constraints (:func:`pareto_builder`):
  ``qLogNoisyExpectedHypervolumeImprovement`` (qLogNEHVI) with the outcome constraints as
  ``constraints=`` callables, which weight each Monte-Carlo sample by a smoothed feasibility
  indicator; with one objective and outcome constraints, the same model's feasibility-weighted qLogNEI.

BoTorch can JIT-compile a fused C++ kernel for qLogNEHVI the first time one is built (about 35 s
here, once per machine, cached under ``TORCH_EXTENSIONS_DIR``, and only with a C++ compiler); it
made greedy Pareto picks about 25 % faster. That build is not triggered by default (a campaign never
stalls on it and needs no compiler): :func:`fused_kernel_build` allows it, and a kernel that is
already loaded is used either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import botorch.acquisition.multi_objective.logei as botorch_logei
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models import ModelListGP
from botorch.models.model import Model
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from athanor.spec import CampaignSpec
from tools.optimiser.multioutput import ModelledOutput, OutcomeBound, outcome_bounds, reference_point

__all__ = [
    "UCB_BETA",
    "AcquisitionBuilder",
    "acquisition",
    "builder",
    "fused_kernel_build",
    "pareto_builder",
    "qmc_sampler",
]

#: Exploration weight of the GP's upper confidence bound ``mean + sqrt(beta) * std``: 1.41 standard
#: deviations up. Of 2, 4 (Liang et al.'s ``lambda = 2``) and 9, chosen on seeds 0-9 of the four
#: benchmark pools and confirmed on seeds 10-19 (BENCHMARKS.md, "Paired by seed"); 9 lost on P3HT/CNT
#: and AgNP, 2 lost nowhere. The forest keeps Liang et al.'s
#: :data:`tools.optimiser.forest_model.LIANG_BETA`.
UCB_BETA = 2.0

#: The acquisition function given the points to treat as pending (``p x d``).
AcquisitionBuilder = Callable[[Tensor], AcquisitionFunction]


def qmc_sampler(mc_samples: int, seed: int) -> SobolQMCNormalSampler:
    """A seeded Sobol quasi-Monte-Carlo sampler of ``mc_samples`` base samples."""
    return SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)


def acquisition(
    kind: Literal["qlognei", "ucb"],
    model: Model,
    baseline: Tensor,
    pending: Tensor | None,
    sampler: SobolQMCNormalSampler,
    beta: float = UCB_BETA,
) -> AcquisitionFunction:
    """The acquisition ``kind``: qLogNEI over the measured ``baseline`` (``n x d``), or qUCB with ``beta``.

    ``pending`` is passed to BoTorch as it is (None for none).
    """
    if kind == "ucb":
        return qUpperConfidenceBound(model, beta=beta, sampler=sampler, X_pending=pending)
    return qLogNoisyExpectedImprovement(
        model, X_baseline=baseline, sampler=sampler, X_pending=pending, prune_baseline=True
    )


def builder(
    model: Model,
    baseline: Tensor,
    seed: int,
    mc_samples: int,
    kind: Literal["qlognei", "ucb"] = "qlognei",
    beta: float = UCB_BETA,
) -> AcquisitionBuilder:
    """A function from pending points (``p x d``; none pending when ``p == 0``) to :func:`acquisition`."""

    def build(pending: Tensor) -> AcquisitionFunction:
        given = pending if pending.shape[0] else None
        return acquisition(kind, model, baseline, given, qmc_sampler(mc_samples, seed), beta)

    return build


def pareto_builder(
    spec: CampaignSpec, outputs: list[ModelledOutput], x: Tensor, y: Tensor, seed: int, mc_samples: int
) -> tuple[AcquisitionBuilder, list[OutcomeBound], str]:
    """The Pareto acquisition for given pending points, the model-scale bounds and a note for rationales.

    Args:
        spec: The campaign spec (objectives, thresholds, outcome constraints).
        outputs: The fitted quantities, objectives first.
        x: Measured model inputs, ``n x input_dim`` (the baseline).
        y: Measured values, ``n x k``, one column per output.
        seed: Seed of the quasi-Monte-Carlo samples.
        mc_samples: Quasi-Monte-Carlo samples.
    """
    model = ModelListGP(*[o.fitted.model for o in outputs])
    bounds = outcome_bounds(spec, outputs)
    constraints = [b.violation for b in bounds] or None
    m = len(spec.objectives)

    if m == 1:
        primary = GenericMCObjective(lambda samples, X=None: samples[..., 0])

        def single(pending: Tensor) -> AcquisitionFunction:
            return qLogNoisyExpectedImprovement(
                model,
                X_baseline=x,
                sampler=qmc_sampler(mc_samples, seed),
                objective=primary,
                constraints=constraints,
                X_pending=pending if pending.shape[0] else None,
                prune_baseline=True,
            )

        return single, bounds, ""

    reference, note = reference_point(list(spec.objectives), outputs, y, bounds)
    objective = IdentityMCMultiOutputObjective(outcomes=list(range(m))) if len(outputs) > m else None

    def several(pending: Tensor) -> AcquisitionFunction:
        return qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=reference,
            X_baseline=x,
            sampler=qmc_sampler(mc_samples, seed),
            objective=objective,
            constraints=constraints,
            X_pending=pending if pending.shape[0] else None,
            prune_baseline=True,
        )

    return several, bounds, note


@contextmanager
def fused_kernel_build(allowed: bool) -> Iterator[None]:
    """Keep BoTorch from JIT-compiling its fused qLogNEHVI kernel inside the block unless ``allowed``.

    BoTorch has no option for it: its module's load flag is set for the block and cleared after, so
    that a later caller that allows the build still gets it.
    """
    loaded = getattr(botorch_logei, "_C", None) is not None
    untried = not loaded and getattr(botorch_logei, "_load_attempted", True) is False
    if allowed or not untried:
        yield
        return
    botorch_logei._load_attempted = True
    try:
        yield
    finally:
        botorch_logei._load_attempted = False
