from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from pymatgen.core import Composition, Element

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import DESCRIPTOR_NAMES, CampaignSpec
from tools.descriptors import CompositionDescriptors, descriptor_inputs, descriptor_table
from tools.design_space import design_space
from tools.initial_design import initial_design
from tools.optimiser import fit_summary, propose, propose_pareto

#: Five elements whose Pauling electronegativities range from 1.31 (Mg) to 1.91 (Ni).
ALLOY = ["Mg", "Al", "Ti", "Ni", "Cu"]


def make_spec(components, descriptors=(), **extra):
    return CampaignSpec(
        components=[{"name": c} for c in components],
        objectives=[{"name": "hardness"}],
        budget={"experiments": 20},
        descriptors=list(descriptors),
        **({"basis": "mole"} | extra),
    )


def vec(symbol):
    """Valence electrons by the group rule, from pymatgen's group and atomic number."""
    element = Element(symbol)
    return min(element.group if element.group <= 12 else element.group - 10, element.Z)


def expected(atoms):
    """Every descriptor, by hand, from atomic amounts {symbol: amount} (any scale)."""
    total = sum(atoms.values())
    c = {e: a / total for e, a in atoms.items()}
    r = {e: float(Element(e).atomic_radius) for e in c}
    chi = {e: float(Element(e).X) for e in c}
    r_mean = sum(c[e] * r[e] for e in c)
    chi_mean = sum(c[e] * chi[e] for e in c)
    return {
        "radius_mean": r_mean,
        "radius_mismatch": math.sqrt(sum(c[e] * (1 - r[e] / r_mean) ** 2 for e in c)),
        "electronegativity_mean": chi_mean,
        "electronegativity_spread": math.sqrt(sum(c[e] * (chi[e] - chi_mean) ** 2 for e in c)),
        "valence_electrons_mean": sum(c[e] * vec(e) for e in c),
        "mixing_entropy": -sum(v * math.log(v) for v in c.values() if v > 0),
    }


def spread_of(spec, composition):
    return descriptor_table(spec, [composition], ["electronegativity_spread"])[0]["electronegativity_spread"]


def observe(spec, compositions):
    return [
        Observation(
            experiment_id=f"E{i:03d}", iteration=0, composition=c, values={"hardness": spread_of(spec, c)}
        )
        for i, c in enumerate(compositions)
    ]


# ------------------------------------------------------------------------------------------- values
def test_binary_values_match_hand_computed_ones():
    spec = make_spec(["Fe", "Ni"])
    [row] = descriptor_table(spec, [{"Fe": 0.3, "Ni": 0.7}])
    assert list(row) == list(DESCRIPTOR_NAMES)
    assert row == pytest.approx(expected({"Fe": 0.3, "Ni": 0.7}), rel=1e-12, abs=1e-12)
    assert row["valence_electrons_mean"] == pytest.approx(0.3 * 8 + 0.7 * 10)  # Fe group 8, Ni group 10


def test_ternary_with_a_formula_on_the_mass_basis_counts_atoms():
    spec = make_spec(["Cu", "Al", "TiO2"], basis="mass")
    weights = {"Cu": 0.5, "Al": 0.2, "TiO2": 0.3}
    moles = {c: w / Composition(c).weight for c, w in weights.items()}
    atoms = {"Cu": moles["Cu"], "Al": moles["Al"], "Ti": moles["TiO2"], "O": 2 * moles["TiO2"]}
    [row] = descriptor_table(spec, [weights])
    assert row == pytest.approx(expected(atoms), rel=1e-10)
    # the mole basis reads the same numbers as formula units, which changes every descriptor
    [on_moles] = descriptor_table(make_spec(["Cu", "Al", "TiO2"]), [weights])
    assert on_moles == pytest.approx(expected({"Cu": 0.5, "Al": 0.2, "Ti": 0.3, "O": 0.6}), rel=1e-12)
    assert on_moles["radius_mean"] != pytest.approx(row["radius_mean"])


def test_volume_basis_reads_amounts_as_formula_units_and_percent_specs_as_fractions():
    composition = {"Fe": 0.2, "Co": 0.3, "Ni": 0.5}
    on_moles = descriptor_table(make_spec(["Fe", "Co", "Ni"]), [composition])
    on_volume = descriptor_table(make_spec(["Fe", "Co", "Ni"], basis="volume"), [composition])
    percent = CampaignSpec(
        components=[{"name": c, "upper": 100} for c in ("Fe", "Co", "Ni")],
        sum_rule={"total": 100},
        objectives=[{"name": "hardness"}],
        budget={"experiments": 20},
        basis="mole",
    )
    in_percent = descriptor_table(percent, [{k: 100 * v for k, v in composition.items()}])
    assert on_volume == on_moles
    assert in_percent[0] == pytest.approx(on_moles[0], rel=1e-12)


def test_mixing_entropy_is_zero_at_pure_corners_and_ln_n_at_equimolar_points():
    spec = make_spec(["Fe", "Co", "Ni"])
    corners = [{"Fe": 1.0, "Co": 0.0, "Ni": 0.0}, {"Fe": 0.0, "Co": 0.0, "Ni": 1.0}]
    middle = [{"Fe": 0.5, "Co": 0.5, "Ni": 0.0}, {"Fe": 1 / 3, "Co": 1 / 3, "Ni": 1 / 3}]
    rows = descriptor_table(spec, corners + middle)
    for row in rows[:2]:
        assert row["mixing_entropy"] == 0.0 and math.copysign(1.0, row["mixing_entropy"]) == 1.0
        assert row["radius_mismatch"] == 0.0 and row["electronegativity_spread"] == 0.0
    assert rows[2]["mixing_entropy"] == pytest.approx(math.log(2), rel=1e-12)
    assert rows[3]["mixing_entropy"] == pytest.approx(math.log(3), rel=1e-12)


def test_gradients_are_finite_everywhere_and_non_zero_inside():
    calc = CompositionDescriptors(make_spec(["Mg", "Ni", "TiO2"]), DESCRIPTOR_NAMES)
    points = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.4, 0.6]], dtype=torch.float64)
    for j, name in enumerate(calc.names):
        x = points.clone().requires_grad_(True)
        calc(x)[:, j].sum().backward()
        assert bool(torch.isfinite(x.grad).all()), name
        assert float(x.grad[0].abs().sum()) > 1e-6, name  # the interior point moves every descriptor


def test_model_inputs_append_scaled_descriptors_with_gradients():
    spec = make_spec(ALLOY, ["electronegativity_spread", "mixing_entropy"])
    space = design_space(spec)
    x = space.sample(32, seed=3)
    transform = descriptor_inputs(space, x[:8])
    transform.eval()
    out = transform(x)
    assert out.shape == (32, space.dim + 2)
    assert bool((out[:, -2:] > -0.05).all() and (out[:, -2:] < 1.05).all())  # scaled over the space
    raw = CompositionDescriptors(spec).of_compositions(space.to_compositions(x))
    for j in range(2):  # the scaling is affine and increasing
        assert torch.corrcoef(torch.stack([out[:, space.dim + j], raw[:, j]]))[0, 1] > 0.999
    probe = x[:1].clone().requires_grad_(True)
    transform(probe)[0, -2:].sum().backward()
    assert bool(torch.isfinite(probe.grad).all()) and float(probe.grad.abs().sum()) > 0


# ------------------------------------------------------------------------------------------ refusals
def test_spec_refuses_unknown_duplicate_and_unsupported_descriptors():
    with pytest.raises(ValidationError, match=r"unknown descriptor.*'radius'.*choose from radius_mean"):
        make_spec(["Fe", "Ni"], ["radius"])
    with pytest.raises(ValidationError, match="mixing_entropy listed more than once"):
        make_spec(["Fe", "Ni"], ["mixing_entropy", "mixing_entropy"])
    with pytest.raises(ValidationError, match=r"P3HT.*need chemical formulas"):
        make_spec(["P3HT", "Ni"], ["radius_mean"])
    with pytest.raises(ValidationError, match="no Pauling electronegativity for He"):
        make_spec(["He", "Ni"], ["electronegativity_spread"])
    with pytest.raises(ValidationError, match="categories"):
        make_spec(["Fe", "Ni"], ["radius_mean"], categories=[{"name": "anneal", "choices": ["a", "b"]}])
    assert make_spec(["He", "Ni"], ["valence_electrons_mean"]).descriptors == ["valence_electrons_mean"]
    assert make_spec(["P3HT", "CNT"]).descriptors == []  # no descriptors, no formula needed


def test_descriptor_functions_refuse_non_formulas_and_missing_data():
    with pytest.raises(SpecError, match=r"P3HT.*need chemical formulas"):
        descriptor_table(make_spec(["P3HT", "CNT"]), [{"P3HT": 0.5, "CNT": 0.5}])
    with pytest.raises(SpecError, match="no atomic radius for He"):
        CompositionDescriptors(make_spec(["He", "Ni"]), ["radius_mismatch"])
    with pytest.raises(SpecError, match="unknown descriptor"):
        CompositionDescriptors(make_spec(["Fe", "Ni"]), ["hardness"])
    with pytest.raises(SpecError, match="lacks component"):
        descriptor_table(make_spec(["Fe", "Ni"]), [{"Fe": 1.0}])


# ------------------------------------------------------------------------------------------ optimiser
def test_propose_with_a_descriptor_stays_feasible_and_differs():
    plain = make_spec(ALLOY)
    with_spread = make_spec(ALLOY, ["electronegativity_spread"])
    observations = observe(plain, initial_design(plain, 8, seed=1))
    a = propose(plain, observations, 2, seed=4)
    b = propose(with_spread, observations, 2, seed=4)
    for s in a + b:
        assert s.source == "model" and with_spread.violations(s.composition) == []
    assert [s.composition for s in a] != [s.composition for s in b]
    assert [s.model_inputs for s in a] == [ALLOY, ALLOY]
    assert [s.model_inputs for s in b] == [[*ALLOY, "electronegativity_spread"]] * 2
    summary = fit_summary(with_spread, observations)
    assert summary is not None and list(summary.lengthscales) == [*ALLOY, "electronegativity_spread"]


def test_a_descriptor_the_objective_depends_on_makes_the_model_predict_better():
    plain = make_spec(ALLOY)
    observations = observe(plain, initial_design(plain, 10, seed=0))
    without = fit_summary(plain, observations)
    with_spread = fit_summary(make_spec(ALLOY, ["electronegativity_spread"]), observations)
    assert without is not None and with_spread is not None
    assert with_spread.loo_r2 > 0.9 and with_spread.loo_r2 > without.loo_r2 + 0.2


def pareto_spec(descriptors=(), **extra):
    """Hardness against cost (minimised) over ALLOY."""
    return CampaignSpec(
        components=[{"name": c} for c in ALLOY],
        objectives=[{"name": "hardness"}, {"name": "cost", "direction": "minimise"}],
        budget={"experiments": 20},
        basis="mole",
        descriptors=list(descriptors),
        **extra,
    )


def test_mixed_and_pareto_paths_use_descriptors():
    plain = make_spec(ALLOY)
    observations = observe(plain, initial_design(plain, 8, seed=2))
    mixed = make_spec(ALLOY, ["electronegativity_spread"], max_active_components=2)
    for s in propose(mixed, observations, 2, seed=1, num_restarts=2, raw_samples=32):
        assert s.source == "model" and mixed.violations(s.composition) == [] and len(s.active_components) <= 2
    pareto = pareto_spec(["electronegativity_spread"])
    priced = [
        o.model_copy(update={"values": o.values | {"cost": o.composition["Ni"] + 0.1}}) for o in observations
    ]
    [s] = propose_pareto(pareto, priced, 1, seed=1, num_restarts=2, raw_samples=32, mc_samples=64)
    assert s.source == "model" and pareto.violations(s.composition) == []


@pytest.mark.parametrize("mode", ["mixed", "pareto", "mixed_pareto"])
def test_every_model_based_path_fits_its_model_on_the_descriptors(mode):
    plain = make_spec(ALLOY)
    observations = [
        o.model_copy(update={"values": o.values | {"cost": 2.0 * o.composition["Ni"] + o.composition["Ti"]}})
        for o in observe(plain, initial_design(plain, 7, seed=9))
    ]
    specs = {
        "mixed": lambda d: make_spec(ALLOY, d, max_active_components=3),
        "pareto": lambda d: pareto_spec(d),
        "mixed_pareto": lambda d: pareto_spec(d, max_active_components=3),
    }
    for descriptors in ([], ["radius_mismatch", "mixing_entropy"]):
        spec = specs[mode](descriptors)
        [s] = propose(spec, observations, 1, seed=6, num_restarts=2, raw_samples=16, mc_samples=32)
        assert s.source == "model" and spec.violations(s.composition) == []
        assert s.model_inputs == [*ALLOY, *descriptors]
