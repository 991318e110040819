"""Which strategy a spec needs: the optimiser's entry points route each spec to one strategy module.

- :func:`propose`: several objectives or outcome constraints go to :func:`propose_pareto`; otherwise a
  spec with ``max_active_components``, ``resolution`` or ``categories`` to the mixed strategy; a
  ``surrogate: random_forest`` spec to the forest; everything else to the continuous GP.
- :func:`propose_pareto`: the mixed Pareto strategy when the spec needs the mixed space, else the
  continuous one.
- :func:`propose_multifidelity`: the cost-aware strategy, with the single-fidelity :func:`propose`
  for the picks at the target when there is no multi-fidelity model.

The strategies never import each other; only this module knows them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.budget import is_target, target_name
from tools.mixed_space import needs_mixed_space
from tools.optimiser.continuous import propose_continuous
from tools.optimiser.forest import propose_forest
from tools.optimiser.mixed import propose_mixed
from tools.optimiser.mixed_pareto import propose_pareto_mixed
from tools.optimiser.multifidelity import FidelitySuggestion, propose_by_cost
from tools.optimiser.options import OptimiserOptions
from tools.optimiser.pareto import propose_pareto_continuous
from tools.optimiser.suggestions import Suggestion

__all__ = ["needs_pareto", "propose", "propose_multifidelity", "propose_pareto"]


def needs_pareto(spec: CampaignSpec) -> bool:
    """Whether ``spec`` needs :func:`propose_pareto`: several objectives or outcome constraints."""
    return len(spec.objectives) > 1 or bool(spec.outcome_constraints)


def propose(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    pending_choices: Sequence[dict[str, str]] = (),
    log_transform: bool | None = None,
    num_restarts: int = 4,
    raw_samples: int = 64,
    mc_samples: int = 128,
    options: OptimiserOptions | None = None,
) -> list[Suggestion]:
    """Propose ``n`` compositions to measure next, best first.

    Args:
        spec: The campaign spec; its primary objective is optimised in its direction.
        observations: Every observation so far. Only those with status ``"ok"``, a finite value for
            the primary objective and every free component are used.
        n: Batch size (number of compositions, jointly optimised).
        seed: Seed of every random stream here; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        pending_choices: The categorical choices of each pending composition (specs with categories).
        log_transform: Force (True) or forbid (False) modelling the log of the values; None uses
            the log when all values share a sign and their magnitudes span more than
            :data:`tools.modelling.LOG_SPAN`. Values of mixed sign are never logged.
        num_restarts: Starting batches for the acquisition optimiser (the Pareto strategies keep
            their own).
        raw_samples: Random feasible batches scored to choose the starting batches (likewise).
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        options: The model and acquisition (:class:`~tools.optimiser.options.OptimiserOptions`;
            None: the defaults). Only the continuous GP takes the model and acquisition options.

    Returns:
        ``n`` suggestions, best first, each feasible (``spec.violations(s.composition) == []``),
        none a near-duplicate of an observation, a pending composition or another suggestion when
        the space leaves room. Both mixed paths also fill ``active_components`` and ``choices``.

    Raises:
        SpecError: A pending composition lacks a component of the spec, or an option does not
            apply to the spec's strategy.
    """
    if n <= 0:
        return []
    options = options or OptimiserOptions()
    if needs_pareto(spec):
        return propose_pareto(
            spec,
            observations,
            n,
            seed,
            pending,
            pending_choices=pending_choices,
            log_transform=log_transform,
            mc_samples=mc_samples,
            options=options,
        )
    if needs_mixed_space(spec):
        return propose_mixed(
            spec,
            observations,
            n,
            seed,
            pending,
            pending_choices=pending_choices,
            log_transform=log_transform,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            mc_samples=mc_samples,
            options=options,
        )
    if spec.surrogate == "random_forest":
        options.refuse_model_options("surrogate: random_forest")
        return propose_forest(spec, observations, n, seed, pending, log_transform=log_transform)
    return propose_continuous(
        spec,
        observations,
        n,
        seed,
        pending,
        log_transform=log_transform,
        num_restarts=num_restarts,
        raw_samples=raw_samples,
        mc_samples=mc_samples,
        options=options,
    )


def propose_pareto(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    pending_choices: Sequence[dict[str, str]] = (),
    log_transform: bool | None = None,
    num_restarts: int = 2,
    raw_samples: int = 64,
    mc_samples: int = 128,
    fused_kernel: bool = False,
    options: OptimiserOptions | None = None,
) -> list[Suggestion]:
    """Propose ``n`` compositions that best extend the feasible Pareto front, best first.

    A spec with ``max_active_components``, ``resolution`` or ``categories`` goes to
    :func:`tools.optimiser.mixed_pareto.propose_pareto_mixed` (which also fills
    ``active_components`` and ``choices``), any other to
    :func:`tools.optimiser.pareto.propose_pareto_continuous`; the arguments are theirs.
    ``pending_choices`` is ignored on the continuous space.
    """
    if n <= 0:
        return []
    if needs_mixed_space(spec):
        return propose_pareto_mixed(
            spec,
            observations,
            n,
            seed,
            pending,
            pending_choices=pending_choices,
            log_transform=log_transform,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            mc_samples=mc_samples,
            fused_kernel=fused_kernel,
            options=options,
        )
    return propose_pareto_continuous(
        spec,
        observations,
        n,
        seed,
        pending,
        log_transform=log_transform,
        num_restarts=num_restarts,
        raw_samples=raw_samples,
        mc_samples=mc_samples,
        fused_kernel=fused_kernel,
        options=options,
    )


def propose_multifidelity(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    cheap_budget: float | None = None,
    min_target: int = 0,
) -> list[FidelitySuggestion]:
    """Propose ``n`` (composition, source) pairs to evaluate next, in pick order.

    The cost-aware strategy of :func:`tools.optimiser.multifidelity.propose_by_cost` (see its
    arguments); without a multi-fidelity model every pick is at the target, proposed by
    :func:`propose` from the target's observations alone.
    """

    def target_only(why: str) -> list[FidelitySuggestion]:
        target = target_name(spec) or "target"
        own = [o for o in observations if is_target(spec, o.fidelity)]
        return [
            FidelitySuggestion(
                composition=s.composition,
                fidelity=target,
                cost=1.0,
                predicted_mean=s.predicted_mean,
                predicted_std=s.predicted_std,
                rationale=f"{target} ({why}): {s.rationale}",
                source=s.source,
            )
            for s in propose(spec, own, n, seed, pending)
        ]

    return propose_by_cost(
        spec,
        observations,
        n,
        seed,
        pending,
        target_only=target_only,
        cheap_budget=cheap_budget,
        min_target=min_target,
    )
