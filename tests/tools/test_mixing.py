"""The mixing plan: compositions on a volume, mole or mass basis become exact, pipettable volumes."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from athanor.errors import SafetyError, SpecError
from athanor.lab import LabDescription, Stock
from athanor.models import Proposal
from athanor.spec import CampaignSpec
from instruments.virtual_lab import virtual_lab_description
from tools.mixing import (
    amounts_per_ul,
    apportion,
    composition_of,
    mixing_plan,
    molar_mass,
    running_low,
    stock_forecast,
)
from tools.protocols import compile_protocol

NAMES = ["P3HT", "D1", "D2", "D6", "D8"]
# Standard atomic weights, g/mol (IUPAC).
CU, AG, ZR = 63.546, 107.8682, 91.224


def stock(component, concentration=None, unit=None, volume=20_000.0, **extra):
    return Stock(
        name=f"{component}_stock",
        component=component,
        volume_ul=volume,
        concentration=concentration,
        concentration_unit=unit,
        **extra,
    )


def plain_stocks(names=NAMES):
    return [stock(n) for n in names]


def ticks(plan):
    steps = {name: round(volume * 10) for name, volume in plan.items()}
    assert all(abs(volume * 10 - steps[name]) < 1e-9 for name, volume in plan.items())  # 0.1 µL steps
    return steps


# --- volume basis: today's behaviour -------------------------------------------------------------


def test_volume_basis_splits_the_sample_in_proportion():
    target = dict(zip(NAMES, [0.5, 0.2, 0.1, 0.1, 0.1], strict=True))
    plan = mixing_plan(target, "volume", plain_stocks(), 200.0)
    assert plan == {
        "P3HT_stock": 100.0,
        "D1_stock": 40.0,
        "D2_stock": 20.0,
        "D6_stock": 20.0,
        "D8_stock": 20.0,
    }


def test_volume_basis_matches_the_compiled_protocol_and_ignores_concentrations():
    """The protocol's volumes are the plan's; on the volume basis stock concentrations change nothing."""
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": n} for n in NAMES],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 10},
        }
    )
    lab = virtual_lab_description(NAMES, time_scale=0.0)
    concentrated = [stock(n, c, "mg/mL") for n, c in zip(NAMES, [10, 1, 2, 0.5, 3], strict=True)]
    rng = np.random.default_rng(3)
    for i in range(100):
        values = rng.dirichlet(np.full(5, 0.2 if i % 2 else 1.0))
        target = dict(zip(NAMES, values.tolist(), strict=True))
        protocol = compile_protocol(Proposal(experiment_id="E0001", composition=target), spec, lab, "A1")
        plan = mixing_plan(target, "volume", lab.stocks, 200.0, min_volume_ul=1.0)
        assert protocol.volumes_ul == plan
        assert mixing_plan(target, "volume", concentrated, 200.0, min_volume_ul=1.0) == plan


def test_largest_remainder_keeps_the_sum():
    plan = mixing_plan({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, "volume", plain_stocks("ABC"), 200.0)
    assert sorted(plan.values()) == [66.6, 66.7, 66.7]
    assert apportion([1, 1, 1], 2000) == [667, 667, 666]
    assert apportion([0.0, 2.0, 1.0], 10) == [0, 7, 3]


def test_component_below_the_pipette_minimum_is_left_out_and_its_share_goes_to_the_others():
    plan = mixing_plan(
        {"A": 0.6, "B": 0.397, "C": 0.003}, "volume", plain_stocks("ABC"), 200.0, min_volume_ul=1.0
    )
    assert plan == {"A_stock": 120.4, "B_stock": 79.6}


# --- mole and mass bases --------------------------------------------------------------------------


def test_mole_basis_with_molar_stocks_of_different_strength():
    stocks = [stock("A", 0.5, "mol/L"), stock("B", 0.1, "mol/L"), stock("C", 20, "mmol/L")]
    target = {"A": 0.2, "B": 0.3, "C": 0.5}
    plan = mixing_plan(target, "mole", stocks, 200.0)
    assert sum(ticks(plan).values()) == 2000
    # volume = amount / concentration, scaled to fill the sample: 0.4 : 3 : 25 (parts of 28.4)
    assert plan["A_stock"] == pytest.approx(200 * 0.4 / 28.4, abs=0.05)
    assert plan["B_stock"] == pytest.approx(200 * 3 / 28.4, abs=0.05)
    assert plan["C_stock"] == pytest.approx(200 * 25 / 28.4, abs=0.05)
    moles = {"A": plan["A_stock"] * 0.5, "B": plan["B_stock"] * 0.1, "C": plan["C_stock"] * 0.02}
    made = composition_of(plan, ["A", "B", "C"], "mole", stocks)
    for name, amount in moles.items():
        assert made[name] == pytest.approx(amount / sum(moles.values()), rel=1e-12)
        assert made[name] == pytest.approx(target[name], abs=2e-3)  # within rounding to 0.1 µL
    # on the volume basis the same volumes are simply their volume shares
    assert composition_of(plan, ["A", "B", "C"], "volume", stocks)["C"] == pytest.approx(
        plan["C_stock"] / 200
    )


def test_mass_basis_with_mass_concentrations():
    stocks = [stock("P3HT", 10, "mg/mL"), stock("CNT", 0.5, "mg/mL"), stock("PCBM", 5, "g/L")]
    target = {"P3HT": 0.9, "CNT": 0.05, "PCBM": 0.05}
    plan = mixing_plan(target, "mass", stocks, 300.0)
    # mass = volume * concentration; volumes 0.09 : 0.1 : 0.01 of the sample
    assert plan == {"P3HT_stock": 135.0, "CNT_stock": 150.0, "PCBM_stock": 15.0}
    masses = [135.0 * 10, 150.0 * 0.5, 15.0 * 5]
    made = composition_of(plan, list(target), "mass", stocks)
    assert list(made.values()) == pytest.approx([m / sum(masses) for m in masses])
    assert list(made.values()) == pytest.approx([0.9, 0.05, 0.05])


def test_atomic_percent_of_a_cu_ag_zr_alloy_uses_element_masses():
    # 0.1 mol/L of each metal, written as mass concentrations: equal molar strengths
    stocks = [stock("Cu", 0.1 * CU, "mg/mL"), stock("Ag", 0.1 * AG, "mg/mL"), stock("Zr", 0.1 * ZR, "mg/mL")]
    at_pct = {"Cu": 0.5, "Ag": 0.3, "Zr": 0.2}
    plan = mixing_plan(at_pct, "mole", stocks, 200.0)
    assert plan == {"Cu_stock": 100.0, "Ag_stock": 60.0, "Zr_stock": 40.0}
    assert composition_of(plan, list(at_pct), "mole", stocks) == pytest.approx(at_pct)
    # the same volumes in wt.% follow from the element masses
    grams = {"Cu": 0.5 * CU, "Ag": 0.3 * AG, "Zr": 0.2 * ZR}
    wt = composition_of(plan, list(at_pct), "mass", stocks)
    assert wt == pytest.approx({k: v / sum(grams.values()) for k, v in grams.items()})
    # and a wt.% target made from molar stocks needs the masses the other way round
    molar = [stock("Cu", 0.1, "mol/L"), stock("Ag", 0.1, "mol/L"), stock("Zr", 0.1, "mol/L")]
    by_mass = mixing_plan({"Cu": 1 / 3, "Ag": 1 / 3, "Zr": 1 / 3}, "mass", molar, 200.0)
    moles = [v / m for v, m in zip([1, 1, 1], [CU, AG, ZR], strict=True)]
    for name, share in zip(["Cu", "Ag", "Zr"], moles, strict=True):
        assert by_mass[f"{name}_stock"] == pytest.approx(200 * share / sum(moles), abs=0.05)


def test_molar_masses_come_from_formulas_or_the_stock():
    assert molar_mass("Cu") == pytest.approx(CU, abs=1e-3)
    assert molar_mass("TiO2") == pytest.approx(79.866, abs=1e-3)
    assert molar_mass("P3HT", stock("P3HT", molar_mass_g_mol=166.3)) == 166.3
    assert molar_mass("D1", None, {"D1": 250.0}) == 250.0
    # names that only look like isotopes or formulas of D/T are not read as deuterium or tritium
    for name in ("P3HT", "D1", "CNT"):
        with pytest.raises(
            SpecError, match=f"stock {name}_stock: '{name}' is not an element.*molar_mass_g_mol"
        ):
            molar_mass(name, stock(name))


def test_mole_basis_with_a_polymer_uses_the_molar_mass_given_on_its_stock():
    stocks = [stock("P3HT", 16.63, "mg/mL", molar_mass_g_mol=166.3), stock("TiO2", 0.1, "mol/L")]
    plan = mixing_plan({"P3HT": 0.5, "TiO2": 0.5}, "mole", stocks, 200.0)
    assert plan == {"P3HT_stock": 100.0, "TiO2_stock": 100.0}  # both 0.1 mol/L
    strengths = amounts_per_ul(["P3HT", "TiO2"], "mass", stocks)
    assert strengths["TiO2"] == pytest.approx(0.1e-6 * 79.866, rel=1e-4)  # g per µL


def test_stocks_without_concentrations_share_one_on_every_basis():
    target = {"A": 0.25, "B": 0.75}
    for basis in ("volume", "mole", "mass"):
        assert mixing_plan(target, basis, plain_stocks("AB"), 200.0) == {"A_stock": 50.0, "B_stock": 150.0}


# --- filling with solvent ---------------------------------------------------------------------


def test_solvent_tops_up_so_that_every_sample_holds_the_same_amount():
    stocks = [stock("A", 0.1, "mol/L"), stock("B", 0.05, "mol/L"), stock("solvent")]
    plan = mixing_plan({"A": 0.5, "B": 0.5}, "mole", stocks, 200.0)
    assert plan == {"A_stock": 50.0, "B_stock": 100.0, "solvent_stock": 50.0}
    # the amount per sample is what the most dilute stock gives in a full sample: 200 µL * 0.05 M
    rng = np.random.default_rng(0)
    for a in rng.uniform(0.02, 0.98, 20):  # both above the 1 µL minimum
        plan = mixing_plan({"A": a, "B": 1 - a}, "mole", stocks, 200.0, min_volume_ul=1.0)
        assert sum(ticks(plan).values()) == 2000
        micromol = plan.get("A_stock", 0.0) * 0.1 + plan.get("B_stock", 0.0) * 0.05
        assert micromol == pytest.approx(10.0, abs=0.01)
        made = composition_of(plan, ["A", "B"], "mole", stocks)
        assert made["A"] == pytest.approx(a, abs=2e-3)


def test_bounds_set_the_amount_per_sample():
    stocks = [stock("A", 0.1, "mol/L"), stock("B", 0.05, "mol/L"), stock("solvent")]
    # B never exceeds 40 %: the dilute stock never needs the whole sample, so samples are richer
    bounds = {"A": (0.6, 1.0), "B": (0.0, 0.4)}
    plan = mixing_plan({"A": 0.6, "B": 0.4}, "mole", stocks, 280.0, bounds=bounds)
    assert plan == {"A_stock": 120.0, "B_stock": 160.0}  # the most demanding composition fills it
    plan = mixing_plan({"A": 0.8, "B": 0.2}, "mole", stocks, 280.0, bounds=bounds)
    assert plan == {"A_stock": 160.0, "B_stock": 80.0, "solvent_stock": 40.0}
    assert 160.0 * 0.1 + 80.0 * 0.05 == pytest.approx(120.0 * 0.1 + 160.0 * 0.05)


def test_without_solvent_the_stocks_are_scaled_to_the_sample():
    stocks = [stock("A", 0.1, "mol/L"), stock("B", 0.05, "mol/L")]
    plan = mixing_plan({"A": 0.5, "B": 0.5}, "mole", stocks, 200.0)
    assert plan == {"A_stock": 66.7, "B_stock": 133.3}


def test_a_solvent_stock_changes_nothing_for_equal_stocks():
    target = {"A": 0.3, "B": 0.7}
    assert mixing_plan(target, "volume", [*plain_stocks("AB"), stock("solvent")], 200.0) == {
        "A_stock": 60.0,
        "B_stock": 140.0,
    }


def test_a_top_up_below_the_pipette_minimum_is_not_dispensed():
    stocks = [stock("A", 0.1, "mol/L"), stock("B", 0.0999, "mol/L"), stock("solvent")]
    plan = mixing_plan({"A": 0.5, "B": 0.5}, "mole", stocks, 200.0, min_volume_ul=1.0)
    assert "solvent_stock" not in plan and sum(ticks(plan).values()) == 2000


def test_rounding_keeps_the_total_exact_on_every_basis():
    stocks = [
        stock("Cu", 3.2, "mg/mL"),
        stock("Ag", 0.07, "mol/L"),
        stock("Zr", 12, "mmol/L"),
        stock("solvent"),
    ]
    rng = np.random.default_rng(1)
    for i in range(200):
        values = rng.dirichlet(np.full(3, 0.3 if i % 2 else 1.0))
        target = dict(zip(["Cu", "Ag", "Zr"], values.tolist(), strict=True))
        for basis in ("mole", "mass"):
            plan = mixing_plan(target, basis, stocks[: 3 + i % 2], 150.0, min_volume_ul=2.0)
            steps = ticks(plan)
            assert sum(steps.values()) == 1500
            assert min(steps.values()) >= 20


# --- what cannot be mixed -------------------------------------------------------------------------


def test_a_missing_stock_is_refused_with_the_fix():
    with pytest.raises(SpecError, match=r"no stock supplies component\(s\) C; add a stock.*C_stock"):
        mixing_plan({"A": 0.5, "C": 0.5}, "volume", plain_stocks("AB"), 200.0)


def test_a_kept_component_below_the_pipette_minimum_is_refused():
    with pytest.raises(SpecError) as caught:
        mixing_plan(
            {"A": 0.6, "B": 0.397, "C": 0.003},
            "volume",
            plain_stocks("ABC"),
            200.0,
            bounds={"C": (0.001, 1.0)},
            min_volume_ul=1.0,
        )
    message = str(caught.value)
    assert "C needs 0.60 µL" in message and "minimum of 1 µL" in message and "lower bound" in message


def test_a_composition_that_needs_more_stock_than_fits_in_the_well_is_refused():
    stocks = [stock("A", 0.1, "mol/L"), stock("B", 0.05, "mol/L"), stock("solvent")]
    bounds = {"A": (0.6, 1.0), "B": (0.0, 0.4)}
    with pytest.raises(SafetyError, match=r"needs 360\.0 µL of stock, more than the 280 µL sample holds"):
        mixing_plan({"A": 0.2, "B": 0.8}, "mole", stocks, 280.0, bounds=bounds)


@pytest.mark.parametrize(
    ("stocks", "basis", "words"),
    [
        ([stock("A", 0.1, "mol/L"), stock("B")], "mole", "stock(s) B_stock give none; add concentration"),
        (
            [stock("A", 0.1, "furlongs"), stock("B", 1, "mol/L")],
            "mole",
            "'furlongs' is not known; use one of",
        ),
        ([stock("P3HT", 1, "mg/mL"), stock("B", 1, "mol/L")], "mole", "stock P3HT_stock: 'P3HT' is not an"),
        ([stock("A", 1, "mol/L"), stock("B", 1, "mol/L")], "weight", "basis 'weight' is not known"),
    ],
)
def test_missing_or_unusable_stock_data_is_refused(stocks, basis, words):
    target = {stocks[0].component: 0.5, "B": 0.5}
    with pytest.raises(SpecError) as caught:
        mixing_plan(target, basis, stocks, 200.0)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("target", "volume", "words"),
    [
        ({"A": -0.1, "B": 1.1}, 200.0, "A must be finite, >= 0"),
        ({"A": 0.0, "B": 0.0}, 200.0, "every amount must be finite"),
        ({"A": 0.5, "B": 0.5}, 200.05, "not a positive multiple of the 0.1 µL"),
    ],
)
def test_bad_targets_and_volumes_are_refused(target, volume, words):
    with pytest.raises(SpecError, match=words):
        mixing_plan(target, "volume", plain_stocks("AB"), volume)


# --- the coder's compiler on a mole basis ----------------------------------------------------------


def test_compile_protocol_mixes_on_the_spec_basis_and_reports_it():
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "Cu", "lower": 0.2, "upper": 0.8}, {"name": "Ag"}, {"name": "Zr"}],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 4},
            "basis": "mole",
        }
    )
    data = virtual_lab_description(["Cu", "Ag", "Zr"], time_scale=0.0).model_dump()
    data["stocks"] = [
        s.model_dump()
        for s in [
            stock("Cu", 0.2, "mol/L"),
            stock("Ag", 0.1 * AG, "g/L"),
            stock("Zr", 50, "mmol/L"),
            stock("solvent"),
        ]
    ]
    lab = LabDescription.model_validate(data)
    protocol = compile_protocol(
        Proposal(experiment_id="E0001", composition={"Cu": 0.4, "Ag": 0.4, "Zr": 0.2}), spec, lab, "A1"
    )
    assert sum(protocol.volumes_ul.values()) == pytest.approx(200.0)
    assert protocol.composition == pytest.approx({"Cu": 0.4, "Ag": 0.4, "Zr": 0.2}, abs=1e-3)
    assert "solvent_stock" in protocol.volumes_ul
    dispensed = sum(c.params["volume_ul"] for c in protocol.commands if c.action == "dispense")
    assert dispensed == pytest.approx(200.0)


def test_basis_defaults_to_volume_and_rejects_others():
    base = {
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [{"name": "x"}],
        "budget": {"experiments": 1},
    }
    assert CampaignSpec.model_validate(base).basis == "volume"
    assert (
        CampaignSpec.from_yaml(CampaignSpec.model_validate({**base, "basis": "mass"}).to_yaml()).basis
        == "mass"
    )
    with pytest.raises(ValidationError):
        CampaignSpec.model_validate({**base, "basis": "weight"})


# --- stock run-out --------------------------------------------------------------------------------


def test_stock_forecast_names_the_stock_and_the_sample_it_cannot_supply():
    plans = [{"A": 60.0, "B": 140.0}, {"A": 100.0, "B": 100.0}, {"A": 150.0, "B": 50.0}]
    assert stock_forecast(plans, {"A": 1000.0, "B": 1000.0}) == []
    assert stock_forecast(plans[2:], {"A": 120.0, "B": 500.0}) == [
        (
            "stock A has 120 µL left; sample 1 needs 150 µL: refill it and resume"
            " with `athanor resume RUN --refill A=<µL>`"
        )
    ]
    messages = stock_forecast(plans, {"A": 200.0, "B": 200.0}, labels=["E0001", "E0002", "E0003"])
    assert messages == [
        (
            "stock B has 60 µL left after E0001; E0002 needs 100 µL: refill it and resume"
            " with `athanor resume RUN --refill B=<µL>`"
        ),
        (
            "stock A has 40 µL left after E0002; E0003 needs 150 µL: refill it and resume"
            " with `athanor resume RUN --refill A=<µL>`"
        ),
    ]
    assert stock_forecast([{"C": 1.0}], {}) == [
        (
            "stock C has 0 µL left; sample 1 needs 1 µL: refill it and resume"
            " with `athanor resume RUN --refill C=<µL>`"
        )
    ]


def test_running_low_warns_once_when_a_stock_crosses_ten_percent():
    start = {"A": 1000.0, "B": 1000.0}
    assert running_low({"A": 150.0, "B": 500.0}, {"A": 90.0, "B": 400.0}, start) == [
        "stock A is running low: 90 µL left of 1000 µL (below 10%); refill it soon"
    ]
    assert running_low({"A": 90.0, "B": 400.0}, {"A": 50.0, "B": 300.0}, start) == []
