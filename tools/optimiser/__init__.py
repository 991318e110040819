"""The designer's optimiser (BoTorch), organised by concept; this module is its public API.

- Model layer: :mod:`~tools.optimiser.models` (GP fitting, the fitted-model type, numerical guards,
  one thread), :mod:`~tools.optimiser.forest_model` (the random-forest surrogate),
  :mod:`~tools.optimiser.multioutput` (one model per quantity, outcome constraints, reference point);
  the log-scale and usable-observation rules themselves are torch-free, in :mod:`tools.modelling`.
- Data: :mod:`~tools.optimiser.data` (observations to tensors, the near-duplicate test).
- Acquisitions: :mod:`~tools.optimiser.acquisitions`; options: :mod:`~tools.optimiser.options`.
- Strategies, which never import each other: :mod:`~tools.optimiser.continuous`,
  :mod:`~tools.optimiser.forest`, :mod:`~tools.optimiser.mixed`, :mod:`~tools.optimiser.pareto`,
  :mod:`~tools.optimiser.mixed_pareto`, :mod:`~tools.optimiser.pool`,
  :mod:`~tools.optimiser.multifidelity`; the mixed ones share :mod:`~tools.optimiser.cell_search`,
  all of them :mod:`~tools.optimiser.suggestions`.
- The router (:mod:`~tools.optimiser.router`): :func:`propose`, :func:`propose_pareto`,
  :func:`propose_multifidelity` pick the strategy a spec needs.

The optimiser never stops a campaign: with too few observations, or when the fit or the
acquisition fails numerically, it returns space-filling points far from the measured ones and says
why in the rationale.
"""

from tools.modelling import LOG_SPAN
from tools.optimiser.acquisitions import UCB_BETA
from tools.optimiser.data import DUPLICATE_DISTANCE
from tools.optimiser.diagnostics import FitSummary, fit_summary
from tools.optimiser.forest import FOREST_SAMPLES
from tools.optimiser.forest_model import LIANG_BETA
from tools.optimiser.mixed import propose_mixed
from tools.optimiser.mixed_pareto import propose_pareto_mixed
from tools.optimiser.multifidelity import FidelitySuggestion
from tools.optimiser.options import OptimiserOptions
from tools.optimiser.pool import PoolPick, pool_acquisition, propose_from_pool
from tools.optimiser.router import needs_pareto, propose, propose_multifidelity, propose_pareto
from tools.optimiser.suggestions import Suggestion

__all__ = [
    "DUPLICATE_DISTANCE",
    "FOREST_SAMPLES",
    "LIANG_BETA",
    "LOG_SPAN",
    "UCB_BETA",
    "FidelitySuggestion",
    "FitSummary",
    "OptimiserOptions",
    "PoolPick",
    "Suggestion",
    "fit_summary",
    "needs_pareto",
    "pool_acquisition",
    "propose",
    "propose_from_pool",
    "propose_mixed",
    "propose_multifidelity",
    "propose_pareto",
    "propose_pareto_mixed",
]
