"""Diagnostics of the model the continuous strategy would use: lengthscales, noise, leave-one-out R²."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from botorch.utils.sampling import manual_seed
from pydantic import BaseModel, ConfigDict

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.design_space import DTYPE, design_space
from tools.optimiser.continuous import fit_continuous
from tools.optimiser.data import usable_tensors
from tools.optimiser.models import NUMERICAL_ERRORS, one_thread, unfit_reason

__all__ = ["FitSummary", "fit_summary"]

_log = logging.getLogger(__name__)


class FitSummary(BaseModel):
    """Diagnostics of the model :func:`tools.optimiser.propose` would use.

    Attributes:
        n_used: Observations the model was fitted on.
        n_ignored: Observations left out (failed, outlier, missing or non-finite value, missing
            component).
        log_transform: Whether values were modelled on a log scale.
        lengthscales: Free component name to its ARD lengthscale, as a fraction of the component's
            range (short = the objective changes quickly along that component); then each of the
            spec's descriptors, as a fraction of its range on the design space.
        noise_std: Fitted noise standard deviation, as a fraction of the values' spread (on the
            model's scale).
        loo_r2: Leave-one-out R² on the model's scale (1 = perfect, <= 0 = no better than the mean).
    """

    model_config = ConfigDict(extra="forbid")

    n_used: int
    n_ignored: int
    log_transform: bool
    lengthscales: dict[str, float]
    noise_std: float
    loo_r2: float


def fit_summary(
    spec: CampaignSpec, observations: Sequence[Observation], *, log_transform: bool | None = None
) -> FitSummary | None:
    """Fit the model :func:`tools.optimiser.propose` would use and report its diagnostics.

    Args:
        spec: The campaign spec.
        observations: Every observation so far; unusable ones are ignored.
        log_transform: Force (True) or forbid (False) the log scale; None decides from the values.

    Returns:
        The diagnostics, or None when there is no model to fit (too few or degenerate data, or a
        numerical failure).
    """
    space = design_space(spec)
    x, y = usable_tensors(space, observations, [spec.primary_objective.name])
    y = y[:, 0]
    if space.dim == 0 or unfit_reason(x, y) is not None:
        return None
    try:
        with manual_seed(0), one_thread():
            fitted = fit_continuous(space, x, y, log_transform)
        model = fitted.model
        with torch.no_grad(), one_thread():
            xn = model.input_transform(x)
            targets = model.train_targets
            noise = model.likelihood.noise.detach().squeeze()
            k = model.covar_module(xn).to_dense() + noise * torch.eye(len(y), dtype=DTYPE)
            k_inv = torch.cholesky_inverse(torch.linalg.cholesky(k))
            alpha = k_inv @ (targets - model.mean_module.constant)
            loo_residuals = alpha / torch.diagonal(k_inv)
            loo_r2 = 1.0 - float((loo_residuals**2).sum() / ((targets - targets.mean()) ** 2).sum())
            lengthscales = model.covar_module.lengthscale.squeeze(0).tolist()
    except NUMERICAL_ERRORS as exc:
        _log.warning("model fit failed: %s", exc)
        return None
    return FitSummary(
        n_used=int(x.shape[0]),
        n_ignored=len(observations) - int(x.shape[0]),
        log_transform=bool(fitted.log_sign),
        lengthscales=dict(zip([*space.names, *spec.descriptors], lengthscales, strict=True)),
        noise_std=float(noise.sqrt()),
        loo_r2=loo_r2,
    )
