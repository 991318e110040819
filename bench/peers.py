"""Peer optimisers on a pool: BayBE's default recommender and Ax's default Bayesian optimisation.

Both are optional (``make bench-setup`` installs them) and imported only when a session starts.

- BayBE: the pool becomes a discrete search space (``SearchSpace.from_dataframe``, one
  ``NumericalDiscreteParameter`` per input column) inside a ``Campaign`` with its default recommender
  (``TwoPhaseMetaRecommender``: random until the first measurements, then ``BotorchRecommender`` with
  BayBE's default GP and acquisition). ``allow_recommending_already_measured=False`` keeps it on the
  unmeasured rows; it scores every remaining row itself.
- Ax: a continuous search space (one float ``RangeParameter`` per column, over the pool's range) and
  the node that Ax's default generation strategy (``method="fast"``) switches to after its
  initialisation phase: ``BOTORCH_MODULAR`` with its default surrogate and acquisition (qLogNEI) and
  Ax's default transforms. Ax cannot be told that only a finite set of points exists, so its model is
  fitted to the measured trials and its own acquisition function is evaluated on every unmeasured row
  (``Adapter.evaluate_acquisition_function``); the best row is measured. Ax's Sobol initialisation is
  replaced by the two initial points every method shares.

Columns that hold a single value are left out (they carry no information and neither library
accepts a parameter with one value).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from athanor.errors import AthanorError
from bench.pool import Pool

__all__ = ["PEER_PACKAGES", "AxSession", "BaybeSession", "require_peer"]

#: Method name to the distribution that provides it.
PEER_PACKAGES = {"baybe": "baybe", "ax": "ax"}
_TARGET = "objective"


def require_peer(method: str) -> None:
    """Raise a clear error when the library behind a peer method is not installed.

    Raises:
        AthanorError: The package is missing; the message says how to install it.
    """
    module = PEER_PACKAGES[method]
    if importlib.util.find_spec(module) is None:
        raise AthanorError(
            f"method {method!r} needs the optional package {module!r}, which is not installed;"
            " run `make bench-setup` (installs the project's `bench` extra) or drop it from --methods"
        )


def _varying(pool: Pool) -> list[int]:
    """Indices of the input columns that take more than one value in the pool."""
    return [j for j in range(pool.x.shape[1]) if np.ptp(pool.x[:, j]) > 0]


class BaybeSession:
    """One seeded BayBE campaign on a pool."""

    def __init__(self, pool: Pool, seed: int) -> None:
        require_peer("baybe")
        import pandas as pd
        from baybe import Campaign
        from baybe.parameters import NumericalDiscreteParameter
        from baybe.searchspace import SearchSpace
        from baybe.settings import active_settings
        from baybe.targets import NumericalTarget

        active_settings.random_seed = seed
        self._pool = pool
        self._columns = [f"x{j}" for j in _varying(pool)]
        self._frame = pd.DataFrame(pool.x[:, _varying(pool)], columns=self._columns)
        parameters = [
            NumericalDiscreteParameter(c, values=sorted(set(self._frame[c]))) for c in self._columns
        ]
        self._campaign = Campaign(
            SearchSpace.from_dataframe(self._frame, parameters),
            NumericalTarget(_TARGET, minimize=pool.direction == "min"),
            allow_recommending_already_measured=False,
        )

    def tell(self, indices: Sequence[int]) -> None:
        """Record the measured values of pool rows ``indices``."""
        measured = self._frame.iloc[list(indices)].copy()
        measured[_TARGET] = self._pool.y[list(indices)]
        self._campaign.add_measurements(measured)

    def ask(self) -> int:
        """The pool row BayBE recommends next."""
        recommendation = self._campaign.recommend(batch_size=1)
        index = int(recommendation.index[0])
        if not np.allclose(recommendation[self._columns].to_numpy(float)[0], self._frame.iloc[index]):
            raise RuntimeError(f"BayBE's recommendation does not match pool row {index}")
        return index


class AxSession:
    """Ax's default BoTorch model and acquisition, scored on the unmeasured rows of a pool."""

    def __init__(self, pool: Pool, seed: int) -> None:
        require_peer("ax")
        from ax.api.client import Client
        from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
        from ax.api.utils.structs import GenerationStrategyDispatchStruct
        from ax.core.experiment import Experiment
        from ax.core.parameter import ParameterType, RangeParameter
        from ax.core.search_space import SearchSpace
        from ax.utils.common.logger import set_ax_logger_levels

        set_ax_logger_levels(logging.WARNING)
        self._pool = pool
        self._varying = _varying(pool)
        lower, upper = pool.x.min(axis=0), pool.x.max(axis=0)
        parameters = [
            RangeParameter(f"x{j}", ParameterType.FLOAT, float(lower[j]), float(upper[j]))
            for j in self._varying
        ]
        self._experiment = Experiment(SearchSpace(parameters), name=f"{pool.name}-seed{seed}")
        self._client = Client(random_seed=seed)
        self._client.set_experiment(self._experiment)
        self._client.configure_optimization(("-" if pool.direction == "min" else "") + _TARGET)
        strategy = choose_generation_strategy(
            GenerationStrategyDispatchStruct(
                method="fast", initialization_budget=0, initialize_with_center=False
            )
        )
        self._generator = strategy.nodes_by_name["MBM"].generator_specs[0]
        self._measured: list[int] = []

    def _parameters(self, index: int) -> dict[str, Any]:
        return {f"x{j}": float(self._pool.x[index, j]) for j in self._varying}

    def tell(self, indices: Sequence[int]) -> None:
        """Attach the pool rows ``indices`` as completed trials with their values."""
        for index in indices:
            trial = self._client.attach_trial(self._parameters(int(index)))
            self._client.complete_trial(trial, {_TARGET: float(self._pool.y[int(index)])})
            self._measured.append(int(index))

    def ask(self) -> int:
        """The unmeasured pool row with the highest value of Ax's acquisition function."""
        from ax.core.observation import ObservationFeatures

        self._generator.fit(experiment=self._experiment, data=self._experiment.lookup_data())
        remaining = np.setdiff1d(np.arange(self._pool.size), self._measured)
        features = [ObservationFeatures(parameters=self._parameters(int(i))) for i in remaining]
        values = np.asarray(
            self._generator.fitted_adapter.evaluate_acquisition_function(features), dtype=float
        )
        return int(remaining[int(np.nanargmax(values))])
