"""The model layer: fitting the Gaussian processes, the fitted-model type and the numerical guards.

Every strategy of :mod:`tools.optimiser` fits its models here. A model's inputs are normalised over
the design-space bounds (or, with the spec's descriptors, the amounts and the scaled descriptors);
its outcome is standardised. Its target is ``direction * t``, larger is better, with ``t`` the value
or its log by the rule of :func:`tools.modelling.log_sign`. Predictions are reported in the
objective's own unit: with the log model, mean and standard deviation are those of the implied
log-normal.

Torch runs on one thread during a call (:func:`one_thread`; the previous setting is restored
afterwards): the matrices are small, and on a shared 2-core machine a second thread made no call
faster but stalled some calls for 5-15 s.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import botorch.fit
import torch
from botorch.exceptions.errors import BotorchError
from botorch.exceptions.warnings import InputDataWarning
from botorch.models import MixedSingleTaskGP, SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.input import ChainedInputTransform, InputTransform, Normalize, Warp
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from linear_operator.utils.warnings import NumericalWarning
from torch import Tensor

from athanor.spec import CampaignSpec
from tools.descriptors import DescriptorFeatures, descriptor_inputs
from tools.mixed_space import MixedSpace
from tools.modelling import log_sign

__all__ = [
    "MIXED_FIT_ITERATIONS",
    "NUMERICAL_ERRORS",
    "FittedModel",
    "Kernel",
    "MllFit",
    "direction_of",
    "failure_reason",
    "fit_gp",
    "fit_mixed",
    "model_targets",
    "one_thread",
    "unfit_reason",
    "warping",
    "winsorised",
]

#: Numerical failures of a fit or an acquisition that trigger a strategy's space-filling fallback.
NUMERICAL_ERRORS = (RuntimeError, ValueError, ArithmeticError, BotorchError)
#: L-BFGS iterations of the mixed-kernel fit. Uncapped it ran 300-500 iterations (2-4 s on one thread
#: with 30 points); at 150 the fitted marginal log likelihood per point was within 0.01 of the uncapped one.
MIXED_FIT_ITERATIONS = 150

#: The GP's kernel: BoTorch's default RBF with ARD, or a Matérn-5/2 with ARD (same dimension-scaled prior).
Kernel = Literal["rbf", "matern"]
#: Fits a model's hyperparameters: BoTorch's ``fit_gpytorch_mll`` or a function with its signature.
MllFit = Callable[..., Any]


def direction_of(spec: CampaignSpec) -> float:
    """+1 when the spec's primary objective is maximised, -1 when it is minimised."""
    return 1.0 if spec.primary_objective.direction == "maximise" else -1.0


def failure_reason(error: BaseException) -> str:
    """The rationale's phrase for a numerical failure, e.g. ``the model failed (NotPSDError)``."""
    return f"the model failed ({type(error).__name__})"


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Jitter added to a near-singular covariance is routine; it must not reach the user's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)
            # prior data may lie outside today's bounds; those points still inform the model
            warnings.simplefilter("ignore", InputDataWarning)
            yield
    finally:
        torch.set_num_threads(previous)


class FittedModel:
    """A fitted model and how its targets relate to the objective's values.

    The model's target is ``direction * t`` with ``t = log_sign * log(log_sign * y)`` on the log
    scale (``log_sign`` is +1 for positive values, -1 for negative ones; ``t`` grows with ``y``
    either way) and ``t = y`` otherwise (``log_sign == 0``).

    Attributes:
        model: The fitted BoTorch model, in eval mode.
        direction: +1 when larger values are better, -1 when smaller are.
        log_sign: +1 or -1 on the log scale, 0 otherwise.
    """

    def __init__(self, model: Model, direction: float, log_sign: float) -> None:
        self.model = model
        self.direction = direction
        self.log_sign = log_sign

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation (objective unit) at ``n x d`` points, each of shape ``n``."""
        with torch.no_grad():
            posterior = self.model.posterior(x)
        mean = self.direction * posterior.mean.squeeze(-1)
        var = posterior.variance.squeeze(-1).clamp_min(0.0)
        if not self.log_sign:
            return mean, var.sqrt()
        magnitude = torch.exp(self.log_sign * mean + var / 2)
        return self.log_sign * magnitude, magnitude * torch.expm1(var).sqrt()

    def input_names(self, columns: Sequence[str]) -> list[str]:
        """The model's input columns: ``columns`` (its raw inputs), then the features it appends to them."""
        appended = [n for m in self.model.modules() if isinstance(m, DescriptorFeatures) for n in m.names]
        return [*columns, *appended]


def model_targets(y: Tensor, direction: float, log_transform: bool | None) -> tuple[Tensor, float, float]:
    """Model targets (``n x 1``, larger is better), the direction sign and the log sign (see `FittedModel`).

    Args:
        y: Values, ``n``, in the quantity's unit.
        direction: +1 when larger values are better, -1 when smaller are.
        log_transform: Force (True) or forbid (False) the log scale; None applies
            :func:`tools.modelling.log_sign`'s rule.
    """
    sign = log_sign(y.tolist(), log_transform)
    t = sign * torch.log(sign * y) if sign else y
    return (direction * t).unsqueeze(-1), direction, sign


def unfit_reason(x: Tensor, y: Tensor) -> str | None:
    """Why no model can be fitted to inputs ``x`` (``n x d``) and values ``y`` (``n``); None if one can."""
    if x.shape[0] < 2:
        return f"only {x.shape[0]} usable observation(s), too few to fit a model"
    if torch.unique(x, dim=0).shape[0] < 2:
        return "all usable observations share one composition, nothing to model"
    if float(y.max() - y.min()) <= 1e-12 * max(1.0, float(y.abs().max())):
        return "all usable observations have the same value, no trend to model"
    return None


def winsorised(targets: Tensor) -> Tensor:
    """``targets`` (``n x 1``, larger is better) with the bad tail clipped at Tukey's lower fence.

    Ax's default for a single objective (``Winsorize``): values below Q1 - 1.5 IQR are raised to it,
    so that a few very bad readings do not set the model's scale.
    """
    q1, q3 = torch.quantile(targets, 0.25), torch.quantile(targets, 0.75)
    return targets.clamp(min=float(q1 - 1.5 * (q3 - q1)))


def warping(d: int, like: Tensor) -> Warp:
    """A Kumaraswamy warping of ``d`` inputs already in the unit cube (LogNormal(0, 0.75) priors)."""
    return Warp(
        d,
        indices=list(range(d)),
        concentration1_prior=LogNormalPrior(0.0, 0.75**0.5),
        concentration0_prior=LogNormalPrior(0.0, 0.75**0.5),
        bounds=torch.stack([torch.zeros(d), torch.ones(d)]).to(like),
    )


def fit_gp(
    x: Tensor,
    y: Tensor,
    bounds: Tensor,
    direction: float,
    log_transform: bool | None,
    *,
    input_transform: InputTransform | None = None,
    warp: bool = False,
    kernel: Kernel = "rbf",
    winsorise: bool = False,
    fit_mll: MllFit = botorch.fit.fit_gpytorch_mll,
) -> FittedModel:
    """Fit a ``SingleTaskGP`` on inputs ``x`` (normalised over ``bounds``) and values ``y``.

    Args:
        x: Inputs, ``n x d``.
        y: Values, ``n``, in the quantity's unit.
        bounds: ``2 x d`` lower and upper bounds the inputs are normalised over.
        direction: +1 to maximise, -1 to minimise.
        log_transform: Force (True) or forbid (False) the log scale; None applies the rule.
        input_transform: Replaces the normalisation (e.g. :func:`tools.descriptors.descriptor_inputs`).
        warp: Add a learnt Kumaraswamy warping of each normalised input (BoTorch's ``Warp``, as in
            BoTorch's warping tutorial): a monotone stretch for a property that changes faster over
            some range of an input than over others.
        kernel: ``"rbf"`` (BoTorch's default) or ``"matern"`` (Matérn-5/2, the same ARD prior); the
            Matérn kernel takes no ``input_transform`` that appends features.
        winsorise: Clip the bad tail of the targets (:func:`winsorised`).
        fit_mll: Fits the marginal log likelihood (BoTorch's ``fit_gpytorch_mll`` by default).

    Raises:
        A numerical error (see :data:`NUMERICAL_ERRORS`) when the fit fails.
    """
    targets, direction, sign = model_targets(y, direction, log_transform)
    if winsorise:
        targets = winsorised(targets)
    d = x.shape[-1]
    transform = input_transform or Normalize(d, bounds=bounds)
    if warp:
        transform = ChainedInputTransform(normalize=transform, warp=warping(d, x))
    covar = None
    if kernel == "matern":
        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False)
    model = SingleTaskGP(
        x, targets, covar_module=covar, input_transform=transform, outcome_transform=Standardize(m=1)
    )
    fit_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return FittedModel(model, direction, sign)


def fit_mixed(
    mixed: MixedSpace,
    x: Tensor,
    y: Tensor,
    log_transform: bool | None,
    *,
    direction: float | None = None,
    fit_mll: MllFit = botorch.fit.fit_gpytorch_mll,
) -> FittedModel:
    """Fit the GP on the mixed space (mixed kernel when there are categorical inputs).

    With categorical variables the GP is BoTorch's ``MixedSingleTaskGP`` (each choice an integer-coded
    input under a categorical kernel, combined with the RBF kernel of the amounts; its fit capped at
    :data:`MIXED_FIT_ITERATIONS`); without them it is a ``SingleTaskGP``.

    Args:
        mixed: The mixed design space.
        x: Model inputs, ``n x input_dim`` (see :meth:`MixedSpace.encode`).
        y: Values, ``n``, in the quantity's unit.
        log_transform: Force (True) or forbid (False) the log scale; None applies the rule.
        direction: +1 when larger values are better, -1 when smaller are; None takes the direction
            of the spec's primary objective.
        fit_mll: Fits the marginal log likelihood (BoTorch's ``fit_gpytorch_mll`` by default).

    Raises:
        A numerical error (see :data:`NUMERICAL_ERRORS`) when the fit fails.
    """
    if direction is None:
        direction = direction_of(mixed.spec)
    targets, _, sign = model_targets(y, direction, log_transform)
    d = mixed.dim
    normalize = Normalize(mixed.input_dim, indices=list(range(d)), bounds=mixed.space.bounds) if d else None
    if d and mixed.spec.descriptors:  # the spec refuses descriptors with categories: no cat_dims here
        normalize = descriptor_inputs(mixed.space, x)
    options = {}
    if mixed.cat_dims:
        model = MixedSingleTaskGP(
            x, targets, cat_dims=mixed.cat_dims, input_transform=normalize, outcome_transform=Standardize(m=1)
        )
        options = {"optimizer_kwargs": {"options": {"maxiter": MIXED_FIT_ITERATIONS}}}
    else:
        model = SingleTaskGP(x, targets, input_transform=normalize, outcome_transform=Standardize(m=1))
    fit_mll(ExactMarginalLogLikelihood(model.likelihood, model), **options)
    model.eval()
    return FittedModel(model, direction, sign)
