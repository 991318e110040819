"""Ground truth for the virtual spectrometer: a sample film's optical transmittance.

:class:`TransmittanceEmulator` is synthetic, not fitted to data: it follows the Beer-Lambert law for
a film of fixed thickness whose components absorb independently, so the absorbances add up:

``T = 100 % * 10 ** (-sum_i a_i x_i)``

with ``x_i`` the fraction of component ``i`` and ``a_i`` its absorbance (at 550 nm, for the nominal
film) when pure. Unless given, each ``a_i`` is drawn from the seed and the component's name, log-
uniformly in ``[0.05, 1.5]`` (from 89 % down to 3 % transmittance when pure). In the virtual lab this
is the second measured quantity next to conductivity, so that a campaign can trade conductivity off
against transparency, as transparent electrodes must; the numbers mean nothing beyond that.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from athanor.errors import InstrumentError
from instruments.emulator import Emulator

__all__ = ["ABSORBANCE_RANGE", "TransmittanceEmulator"]

#: Range of the drawn absorbance of a pure component (base-10, nominal film thickness).
ABSORBANCE_RANGE = (0.05, 1.5)


class TransmittanceEmulator(Emulator):
    """Transmittance (%) of a film from its composition: additive absorbances (Beer-Lambert).

    Attributes:
        components: The component names given.
        absorbance: Component name to its base-10 absorbance when pure.
        noise_rel: Relative measurement noise (standard deviation of ``ln(measured / true)``).
    """

    def __init__(
        self,
        components: Sequence[str],
        seed: int,
        absorbance: Mapping[str, float] | None = None,
        noise_rel: float = 0.01,
    ) -> None:
        """Set each component's absorbance.

        Args:
            components: Component names, at least one, each once.
            seed: Seed of the drawn absorbances.
            absorbance: Component name to absorbance (>= 0) for any component that should not get a
                drawn one.
            noise_rel: Relative measurement noise (0.01 is about 1 %).

        Raises:
            athanor.errors.InstrumentError: No or repeated components, an absorbance for a component
                that is not listed, or a negative or non-finite absorbance.
        """
        names = tuple(components)
        if not names or len(set(names)) != len(names):
            raise InstrumentError(f"components {list(names)} must be non-empty and each named once")
        given = dict(absorbance or {})
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InstrumentError(
                f"options.absorbance names {', '.join(unknown)}, which no stock supplies; the components"
                f" are {', '.join(names)}"
            )
        low, high = np.log(ABSORBANCE_RANGE[0]), np.log(ABSORBANCE_RANGE[1])
        values = {}
        for name in names:
            if name in given:
                value = given[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < np.inf:
                    raise InstrumentError(f"options.absorbance.{name} must be a number >= 0, got {value!r}")
                values[name] = float(value)
            else:
                rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
                values[name] = float(np.exp(rng.uniform(low, high)))
        self.components = names
        self.absorbance = values
        self.noise_rel = float(noise_rel)
        self._coefficients = np.array([values[n] for n in names])

    def log10_values(self, fractions: np.ndarray) -> np.ndarray:
        """``log10`` of the transmittance in % for compositions of shape ``(n, len(components))``."""
        fractions = np.atleast_2d(np.asarray(fractions, dtype=float))
        return 2.0 - fractions @ self._coefficients
