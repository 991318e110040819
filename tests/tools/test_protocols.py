"""The coder's compiler: exact volumes, pipettable steps, honest compositions, a dry run that catches all."""

from __future__ import annotations

import numpy as np
import pytest

from athanor.errors import SafetyError, SpecError
from athanor.lab import LabDescription
from athanor.models import Command, Proposal
from athanor.spec import CampaignSpec
from instruments.backends.simulated import SimulatedLiquidHandlerBackend
from instruments.frontends import LiquidHandler
from instruments.virtual_lab import virtual_lab_description
from instruments.virtual_world import VirtualWorld
from tools.protocols import compile_protocol, validate_protocol

NAMES = ["P3HT", "D1", "D2", "D6", "D8"]


def make_spec(total=1.0, lowers=None, constraints=(), objective="conductivity", names=NAMES):
    lowers = lowers or {}
    return CampaignSpec.model_validate(
        {
            "components": [{"name": n, "lower": lowers.get(n, 0.0), "upper": total} for n in names],
            "sum_rule": {"total": total},
            "constraints": list(constraints),
            "objectives": [{"name": objective}],
            "budget": {"experiments": 10, "batch_size": 5},
        }
    )


def lab_with(**changes) -> LabDescription:
    data = virtual_lab_description(NAMES, time_scale=0.0).model_dump()
    envelope = changes.pop("envelope", {})
    data["instruments"][0]["envelope"].update(envelope)
    data.update(changes)
    return LabDescription.model_validate(data)


def proposal(values, names=NAMES, eid="E0001"):
    return Proposal(experiment_id=eid, composition=dict(zip(names, values, strict=True)))


def dispenses(protocol):
    return [c for c in protocol.commands if c.action == "dispense"]


def test_volumes_sum_exactly_for_many_random_compositions():
    spec, lab = make_spec(), lab_with()
    rng = np.random.default_rng(0)
    for i in range(300):
        alpha = 0.2 if i % 2 else 1.0  # sparse ones put tiny shares below the minimum volume
        values = rng.dirichlet(np.full(5, alpha))
        protocol = compile_protocol(proposal(values), spec, lab, "B3")
        volumes = [c.params["volume_ul"] for c in dispenses(protocol)]
        ticks = [round(v * 10) for v in volumes]
        assert all(abs(v * 10 - t) < 1e-9 for v, t in zip(volumes, ticks, strict=True))  # 0.1 µL steps
        assert sum(ticks) == 2000  # exactly lab.sample_volume_ul
        assert sum(protocol.volumes_ul.values()) == pytest.approx(200.0, abs=1e-9)
        assert min(volumes) >= 1.0
        # The reported composition is what the volumes make: shares too small to pipette are left
        # out, the others scaled up to fill the sample, each within one 0.1 µL step.
        dropped = sum(t for t in values if t * 200 < 1.0)
        for name, target in zip(NAMES, values, strict=True):
            made = protocol.composition[name]
            assert made == pytest.approx(protocol.volumes_ul.get(f"{name}_stock", 0.0) / 200.0)
            expected = 0.0 if target * 200 < 1.0 else target / (1.0 - dropped)
            assert abs(made - expected) <= 0.1 / 200 + 1e-12
        assert sum(protocol.composition.values()) == pytest.approx(1.0)
        assert validate_protocol(protocol, lab) == []


def test_command_sequence_is_dispenses_then_mix_then_measure():
    protocol = compile_protocol(proposal([0.5, 0.2, 0.1, 0.1, 0.1]), make_spec(), lab_with(), "A7")
    assert [c.action for c in protocol.commands] == ["dispense"] * 5 + ["mix", "measure"]
    assert protocol.commands[-1].instrument == "conductivity_meter"
    assert all(c.params["well"] == "A7" for c in protocol.commands)
    assert protocol.volumes_ul == {
        "P3HT_stock": 100.0,
        "D1_stock": 40.0,
        "D2_stock": 20.0,
        "D6_stock": 20.0,
        "D8_stock": 20.0,
    }
    assert all(c.key == "" for c in protocol.commands)  # keys are the engine's


def test_largest_remainder_keeps_the_sum_where_naive_rounding_breaks_it():
    thirds = [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]
    protocol = compile_protocol(proposal(thirds), make_spec(), lab_with(), "A1")
    volumes = sorted(c.params["volume_ul"] for c in dispenses(protocol))
    assert volumes == [66.6, 66.7, 66.7]


def test_share_below_minimum_volume_goes_to_the_others():
    values = [0.6, 0.397, 0.003, 0.0, 0.0]  # D2 would be 0.6 µL, below the 1 µL minimum
    protocol = compile_protocol(proposal(values), make_spec(), lab_with(), "A1")
    assert "D2_stock" not in protocol.volumes_ul
    assert protocol.composition["D2"] == 0.0
    assert sum(protocol.volumes_ul.values()) == pytest.approx(200.0)
    # Its 0.6 µL went to the others in proportion.
    assert protocol.volumes_ul["P3HT_stock"] == pytest.approx(120.4)
    assert protocol.volumes_ul["D1_stock"] == pytest.approx(79.6)


def test_share_below_minimum_with_a_lower_bound_is_refused():
    spec = make_spec(lowers={"D2": 0.001})
    with pytest.raises(SpecError) as caught:
        compile_protocol(proposal([0.6, 0.397, 0.003, 0.0, 0.0]), spec, lab_with(), "A1")
    message = str(caught.value)
    assert "D2" in message and "minimum of 1 µL" in message and "lower bound" in message


def test_dispenses_above_the_maximum_volume_are_split():
    lab = lab_with(sample_volume_ul=250.0, envelope={"max_volume_ul": 100.0})
    protocol = compile_protocol(proposal([0.9, 0.1, 0, 0, 0]), make_spec(), lab, "A1")
    p3ht = [c.params["volume_ul"] for c in dispenses(protocol) if c.params["stock"] == "P3HT_stock"]
    assert sorted(p3ht) == [75.0, 75.0, 75.0]
    assert protocol.volumes_ul == {"P3HT_stock": 225.0, "D1_stock": 25.0}
    assert validate_protocol(protocol, lab) == []
    uneven = compile_protocol(proposal([0.90036, 0.09964, 0, 0, 0]), make_spec(), lab, "A1")
    parts = [c.params["volume_ul"] for c in dispenses(uneven) if c.params["stock"] == "P3HT_stock"]
    assert len(parts) == 3 and max(parts) <= 100.0 and sum(parts) == pytest.approx(225.1)


def test_percent_specs_compile_and_report_percent():
    spec = make_spec(total=100.0)
    protocol = compile_protocol(proposal([50, 25, 25, 0, 0]), spec, lab_with(), "A1")
    assert protocol.composition == {"P3HT": 50.0, "D1": 25.0, "D2": 25.0, "D6": 0.0, "D8": 0.0}
    assert protocol.volumes_ul["P3HT_stock"] == 100.0


@pytest.mark.parametrize(
    ("values", "names", "words"),
    [
        ([0.5, 0.5, 0.1, 0, 0], NAMES, "sum to 1.1"),
        ([0.5, 0.5, 0, 0], NAMES[:4], "missing: D8"),
        ([1.0, -0.1, 0.1, 0, 0], NAMES, "finite and >= 0"),
    ],
)
def test_malformed_proposals_are_refused(values, names, words):
    with pytest.raises(SpecError, match=words):
        compile_protocol(proposal(values, names), make_spec(), lab_with(), "A1")


def test_infeasible_proposal_is_refused():
    spec = make_spec(constraints=[{"coefficients": {"P3HT": 1}, "operator": ">=", "rhs": 0.3}])
    compile_protocol(proposal([0.3, 0.7, 0, 0, 0]), spec, lab_with(), "A1")
    with pytest.raises(SpecError, match=r"P3HT >= 0\.3"):
        compile_protocol(proposal([0.2, 0.8, 0, 0, 0]), spec, lab_with(), "A1")


def test_component_without_stock_names_the_fix():
    lab = lab_with(stocks=[s for s in lab_with().model_dump()["stocks"] if s["component"] != "D6"])
    with pytest.raises(SpecError, match=r"add a stock for each in lab\.yaml.*D6_stock"):
        compile_protocol(proposal([0.5, 0.5, 0, 0, 0]), make_spec(), lab, "A1")


def test_objective_nobody_measures_is_refused():
    with pytest.raises(SpecError, match="no instrument in this lab measures 'hardness'"):
        compile_protocol(proposal([0.5, 0.5, 0, 0, 0]), make_spec(objective="hardness"), lab_with(), "A1")


def test_well_over_capacity_fails_the_dry_run():
    lab = lab_with(sample_volume_ul=250.0, envelope={"max_well_volume_ul": 200.0})
    with pytest.raises(SafetyError, match="over max_well_volume_ul"):
        compile_protocol(proposal([0.5, 0.5, 0, 0, 0]), make_spec(), lab, "A1")


@pytest.fixture
def good():
    return compile_protocol(proposal([0.5, 0.3, 0.2, 0, 0]), make_spec(), lab_with(), "A1")


def replace_command(protocol, index, **update):
    commands = list(protocol.commands)
    commands[index] = commands[index].model_copy(update=update)
    return protocol.model_copy(update={"commands": commands})


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p: replace_command(p, 0, instrument="robot"), "unknown instrument"),
        (lambda p: replace_command(p, 3, action="heat"), "action not allowed on liquid_handler"),
        (lambda p: replace_command(p, 4, action="mix"), "action not allowed on conductivity_meter"),
        (
            lambda p: replace_command(p, 0, params={"stock": "P3HT_stock", "well": "A1", "volume_ul": 0.5}),
            "below min_volume_ul",
        ),
        (
            lambda p: replace_command(p, 0, params={"stock": "P3HT_stock", "well": "A1", "volume_ul": 350.0}),
            "above max_volume_ul",
        ),
        (
            lambda p: replace_command(p, 0, params={"stock": "Ag_stock", "well": "A1", "volume_ul": 100.0}),
            "unknown stock 'Ag_stock'",
        ),
        (lambda p: replace_command(p, 3, params={"well": "Q1"}), "unknown well 'Q1'"),
        (lambda p: replace_command(p, 3, params={"well": "A2"}), "targets well A2"),
        (lambda p: replace_command(p, 3, params={}), "takes parameters (well)"),
        (lambda p: p.model_copy(update={"well": "Z1"}), "well 'Z1' is not a well of this lab"),
        (
            lambda p: p.model_copy(update={"composition": {**p.composition, "Ag": 0.1}}),
            "no stock supplies it; add a stock for Ag",
        ),
        (
            lambda p: p.model_copy(update={"volumes_ul": {**p.volumes_ul, "P3HT_stock": 90.0}}),
            "listed as 90",
        ),
        (
            lambda p: p.model_copy(
                update={
                    "commands": [
                        *p.commands[:3],
                        Command(
                            instrument="liquid_handler",
                            action="dispense",
                            params={"stock": "D1_stock", "well": "A1", "volume_ul": 150.0},
                        ),
                        *p.commands[3:],
                    ]
                }
            ),
            "well A1: the protocol puts 350",
        ),
    ],
)
def test_validate_protocol_catches_each_problem(good, mutate, words):
    assert validate_protocol(good, lab_with()) == []
    problems = validate_protocol(mutate(good), lab_with())
    assert any(words in p for p in problems), problems


def test_validate_protocol_catches_a_stock_too_small():
    data = lab_with().model_dump()
    data["stocks"][0]["volume_ul"] = 50.0
    problems = validate_protocol(
        compile_protocol(proposal([0.5, 0.5, 0, 0, 0]), make_spec(), lab_with(), "A1"),
        LabDescription.model_validate(data),
    )
    assert any("stock P3HT_stock: the protocol draws 100" in p for p in problems)


def test_validate_reports_every_problem_at_once(good):
    bad = replace_command(replace_command(good, 0, instrument="robot"), 3, action="heat")
    assert len(validate_protocol(bad.model_copy(update={"well": "Z1"}), lab_with())) >= 3


def test_out_of_envelope_commands_never_reach_the_back_end(good):
    """What the dry run flags, the front end refuses at run time: the back end sees no call."""
    lab = lab_with()
    world = VirtualWorld()
    backend = SimulatedLiquidHandlerBackend(
        "liquid_handler", world, {s.name: s.component for s in lab.stocks}, 0.0, 0.0, None, 0
    )
    handler = LiquidHandler(lab.instruments[0], backend, lab.wells, lab.stocks)
    too_much = replace_command(good, 0, params={"stock": "P3HT_stock", "well": "A1", "volume_ul": 350.0})
    assert validate_protocol(too_much, lab)
    with pytest.raises(SafetyError):
        handler.execute(too_much.commands[0])
    assert backend.calls == []
    assert world.snapshot() == {}
