"""Requests written the way materials scientists write them, in English and Chinese, read right.

Each request is checked field by field: the objective and its direction, every component with its
bounds, the sum rule and its basis, the budget and the batch size. Between them they use every kind
of phrase docs/request-grammar.md lists; none is one of its examples or the README's.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.llm.reader import read_request
from athanor.spec import CampaignSpec

FRACTION = (0.0, 1.0)
PERCENT = (0.0, 100.0)


def reading(request: str) -> dict[str, Any]:
    """What the reader made of ``request``, in the shape the cases below give it."""
    spec = CampaignSpec.model_validate(read_request(request))
    return {
        "objectives": [(o.name, o.direction) for o in spec.objectives],
        "components": {c.name: (c.lower, c.upper) for c in spec.components},
        "total": None if spec.sum_rule is None else spec.sum_rule.total,
        "basis": spec.basis,
        "budget": (spec.budget.experiments, spec.budget.batch_size),
    }


def case(
    request: str,
    objective: tuple[str, str] | list[tuple[str, str]],
    components: dict[str, tuple[float, float]],
    budget: tuple[int, int],
    total: float | None = 1.0,
    basis: str = "volume",
) -> Any:
    expected = {
        "objectives": objective if isinstance(objective, list) else [objective],
        "components": components,
        "total": total,
        "basis": basis,
        "budget": budget,
    }
    return pytest.param(request, expected, id=request[:60])


ENGLISH = [
    # the objective: verbs, superlatives, questions, "as ... as possible", "for maximum"
    case(
        "Find the CoCrFeMnNi composition with the highest yield strength, each element between 0.05 and"
        " 0.35, 40 experiments, 8 at a time",
        ("yield_strength", "maximise"),
        {e: (0.05, 0.35) for e in ("Co", "Cr", "Fe", "Mn", "Ni")},
        (40, 8),
    ),
    case(
        "What ratio of Cu, Ag and Au gives the best selectivity? Try 18 compositions, three at a time",
        ("selectivity", "maximise"),
        {"Cu": FRACTION, "Ag": FRACTION, "Au": FRACTION},
        (18, 3),
    ),
    case(
        "Which AlCoCrFeNi alloy has the lowest density? 30 experiments in batches of 5",
        ("density", "minimise"),
        {e: FRACTION for e in ("Al", "Co", "Cr", "Fe", "Ni")},
        (30, 5),
    ),
    case(
        "Highest transmittance for ZnO/Al2O3/SiO2, fractions sum to one, 12 experiments, two at a time",
        ("transmittance", "maximise"),
        {"ZnO": FRACTION, "Al2O3": FRACTION, "SiO2": FRACTION},
        (12, 2),
    ),
    case(
        "We want the lowest sheet resistance from PEDOT:PSS, DMSO and EG; DMSO no more than 10 wt.%,"
        " 24 samples in batches of 6",
        ("sheet_resistance", "minimise"),
        {"PEDOT:PSS": PERCENT, "DMSO": (0.0, 10.0), "EG": PERCENT},
        (24, 6),
        total=100.0,
        basis="mass",
    ),
    case(
        "Find the slowest degradation rate for MAPbI3, FAPbI3 and CsPbI3, 20 experiments, 4 per batch",
        ("degradation_rate", "minimise"),
        {"MAPbI3": FRACTION, "FAPbI3": FRACTION, "CsPbI3": FRACTION},
        (20, 4),
    ),
    case(
        "the fastest crystallisation rate of PbI2, MAI and DMSO, MAI between 0.3 and 0.6, 18 runs in"
        " batches of 3",
        ("crystallisation_rate", "maximise"),
        {"PbI2": FRACTION, "MAI": (0.3, 0.6), "DMSO": FRACTION},
        (18, 3),
    ),
    case(
        "Tune PM6, Y6 and o-IDTBR for maximum efficiency, o-IDTBR at most 0.3, 25 trials, 5 per round",
        ("efficiency", "maximise"),
        {"PM6": FRACTION, "Y6": FRACTION, "o-IDTBR": (0.0, 0.3)},
        (25, 5),
    ),
    case(
        "Make the photocatalytic yield as high as possible with TiO2, g-C3N4 and CdS, 10 runs",
        ("photocatalytic_yield", "maximise"),
        {"TiO2": FRACTION, "g-C3N4": FRACTION, "CdS": FRACTION},
        (10, 1),
    ),
    case(
        "Increase the capacity of LiNiO2, LiCoO2 and LiMnO2 as much as possible, LiCoO2 ≥ 0.1,"
        " 24 experiments in batches of 4",
        ("capacity", "maximise"),
        {"LiNiO2": FRACTION, "LiCoO2": (0.1, 1.0), "LiMnO2": FRACTION},
        (24, 4),
    ),
    case(
        "Find the blend of PM6 and Y6 with the most photocurrent, 12 runs",
        ("photocurrent", "maximise"),
        {"PM6": FRACTION, "Y6": FRACTION},
        (12, 1),
    ),
    case(
        "Find the Cu:Ag:Au ratio with the best selectivity, 18 compositions, 3 at a time",
        ("selectivity", "maximise"),
        {"Cu": FRACTION, "Ag": FRACTION, "Au": FRACTION},
        (18, 3),
    ),
    case(
        "Lowest overpotential of a NiFeCo catalyst, Ni at least 0.2, a budget of 20 experiments in rounds"
        " of 4",
        ("overpotential", "minimise"),
        {"Ni": (0.2, 1.0), "Fe": FRACTION, "Co": FRACTION},
        (20, 4),
    ),
    case(
        "Lower the cost of a PCBM/P3HT/ICBA blend as much as possible, 12 experiments, 3 in parallel",
        ("cost", "minimise"),
        {"PCBM": FRACTION, "P3HT": FRACTION, "ICBA": FRACTION},
        (12, 3),
    ),
    case(
        "Boost the quantum efficiency with PEA2PbI4, MAPbI3 and FAPbI3 adding up to 100 %, PEA2PbI4 ≤ 20 %,"
        " 18 trials, 3 per batch",
        ("quantum_efficiency", "maximise"),
        {"PEA2PbI4": (0.0, 20.0), "MAPbI3": PERCENT, "FAPbI3": PERCENT},
        (18, 3),
        total=100.0,
    ),
    case(
        "Enhance the hardness of TiN, CrN and AlN, TiN no less than 0.2, 21 experiments in batches of 7",
        ("hardness", "maximise"),
        {"TiN": (0.2, 1.0), "CrN": FRACTION, "AlN": FRACTION},
        (21, 7),
    ),
    case(
        "Decrease the thermal expansion of a mixture of Fe, Ni and Co, Ni from 0.3 to 0.4, 16 runs,"
        " batch size 4",
        ("thermal_expansion", "minimise"),
        {"Fe": FRACTION, "Ni": (0.3, 0.4), "Co": FRACTION},
        (16, 4),
    ),
    case(
        "Minimize the viscosity of water, ethanol and glycerol by weight, glycerol at most 0.6,"
        " 15 experiments one by one",
        ("viscosity", "minimise"),
        {"water": FRACTION, "ethanol": FRACTION, "glycerol": (0.0, 0.6)},
        (15, 1),
        basis="mass",
    ),
    # the components: hyphens, element strings, formulas, "by tuning", "doped with"
    case(
        "Maximise the conductivity of Cu-Ag-Zr, 20 experiments",
        ("conductivity", "maximise"),
        {"Cu": FRACTION, "Ag": FRACTION, "Zr": FRACTION},
        (20, 1),
    ),
    case(
        "Minimise the roughness of an Al2O3-TiO2 coating, fractions total 1, 15 runs, batch size 3",
        ("roughness", "minimise"),
        {"Al2O3": FRACTION, "TiO2": FRACTION},
        (15, 3),
    ),
    case(
        "Maximize the ionic conductivity by tuning Li2S, P2S5 and LiCl, LiCl ≤ 0.2, 36 experiments,"
        " batch size 6",
        ("ionic_conductivity", "maximise"),
        {"Li2S": FRACTION, "P2S5": FRACTION, "LiCl": (0.0, 0.2)},
        (36, 6),
    ),
    case(
        "TiO2 doped with Nb and Ta: minimise the resistivity, Nb at most 0.1, Ta at most 0.1, 15 runs one"
        " by one",
        ("resistivity", "minimise"),
        {"TiO2": FRACTION, "Nb": (0.0, 0.1), "Ta": (0.0, 0.1)},
        (15, 1),
    ),
    case(
        "Maximise the fracture toughness of ZrO2 doped with Y2O3 and CeO2, Y2O3 at most 8 mol.%, CeO2 at"
        " most 12 mol %, 20 experiments",
        ("fracture_toughness", "maximise"),
        {"ZrO2": PERCENT, "Y2O3": (0.0, 8.0), "CeO2": (0.0, 12.0)},
        (20, 1),
        total=100.0,
        basis="mole",
    ),
    case(
        "Raise the Curie temperature of NiMnGa, Ni from 0.45 to 0.55, 24 samples, 6 per round",
        ("curie_temperature", "maximise"),
        {"Ni": (0.45, 0.55), "Mn": FRACTION, "Ga": FRACTION},
        (24, 6),
    ),
    case(
        "Maximise the toughness of the CoCrNi system, 12 experiments, one at a time",
        ("toughness", "maximise"),
        {"Co": FRACTION, "Cr": FRACTION, "Ni": FRACTION},
        (12, 1),
    ),
    case(
        "Reduce the band gap of CsPbI3 and CsPbBr3, CsPbBr3 between 0.1 and 0.4, 20 runs one at a time",
        ("band_gap", "minimise"),
        {"CsPbI3": FRACTION, "CsPbBr3": (0.1, 0.4)},
        (20, 1),
    ),
    # bounds: the balance, percentages and their basis, ranges written with a dash
    case(
        "Maximise the hardness of a Ti-Al-V alloy with Ti the balance, Al at most 15 at.% and V at most"
        " 5 at.%, 30 experiments in batches of 6",
        ("hardness", "maximise"),
        {"Ti": PERCENT, "Al": (0.0, 15.0), "V": (0.0, 5.0)},
        (30, 6),
        total=100.0,
        basis="mole",
    ),
    case(
        "Minimise the corrosion rate of a Fe-Cr-Ni alloy, Cr between 10 and 25 wt.%, Ni from 5 to 15 wt.%,"
        " Fe the balance, 40 samples, 8 at a time",
        ("corrosion_rate", "minimise"),
        {"Fe": PERCENT, "Cr": (10.0, 25.0), "Ni": (5.0, 15.0)},
        (40, 8),
        total=100.0,
        basis="mass",
    ),
    case(
        "Cr 10-25 at.% and Al 0-8 at.% in a Ni-Cr-Al-Ti alloy, maximise the creep life, 30 experiments,"
        " 5 at a time",
        ("creep_life", "maximise"),
        {"Ni": PERCENT, "Cr": (10.0, 25.0), "Al": (0.0, 8.0), "Ti": PERCENT},
        (30, 5),
        total=100.0,
        basis="mole",
    ),
    case(
        "Maximise the yield of A, B, C and D; D the balance; A ≥ 0.1; B ≤ 0.3; 40 runs; 8 per batch",
        ("yield", "maximise"),
        {"A": (0.1, 1.0), "B": (0.0, 0.3), "C": FRACTION, "D": FRACTION},
        (40, 8),
    ),
    case(
        "Maximise the power factor of Mg2Si, Mg2Sn and Mg2Ge, Mg2Ge between 0 and 10 mol %, 30 experiments,"
        " 5 at a time",
        ("power_factor", "maximise"),
        {"Mg2Si": PERCENT, "Mg2Sn": PERCENT, "Mg2Ge": (0.0, 10.0)},
        (30, 5),
        total=100.0,
        basis="mole",
    ),
    case(
        "Get the highest Seebeck coefficient from Bi2Te3, Sb2Te3 and Bi2Se3, summing to 100 %, Bi2Te3 no"
        " less than 20 %, 32 experiments, 4 per batch",
        ("seebeck_coefficient", "maximise"),
        {"Bi2Te3": (20.0, 100.0), "Sb2Te3": PERCENT, "Bi2Se3": PERCENT},
        (32, 4),
        total=100.0,
    ),
    case(
        "I would like the highest thermal conductivity of a BN/AlN/epoxy composite, epoxy at least 0.4,"
        " budget 20, batches of 4",
        ("thermal_conductivity", "maximise"),
        {"BN": FRACTION, "AlN": FRACTION, "epoxy": (0.4, 1.0)},
        (20, 4),
    ),
    case(
        "Minimise the cost of Fe, Mn and Al, Mn no less than 0.15 and no more than 0.3, 14 experiments",
        ("cost", "minimise"),
        {"Fe": FRACTION, "Mn": (0.15, 0.3), "Al": FRACTION},
        (14, 1),
    ),
    case(
        "Find the lowest cost composition of Fe and Mn with the highest strength, 14 runs",
        [("cost", "minimise"), ("strength", "maximise")],
        {"Fe": FRACTION, "Mn": FRACTION},
        (14, 1),
    ),
    case(
        "Maximise hardness of Cu, Ag and Zr by mass, Ag at most 0.2, 16 runs",
        ("hardness", "maximise"),
        {"Cu": FRACTION, "Ag": (0.0, 0.2), "Zr": FRACTION},
        (16, 1),
        basis="mass",
    ),
]

CHINESE = [
    case(
        "最大化 CoCrFeMnNi 合金的硬度，每种元素介于 0.05 和 0.35 之间，40 次实验，每批 8 个",
        ("hardness", "maximise"),
        {e: (0.05, 0.35) for e in ("Co", "Cr", "Fe", "Mn", "Ni")},
        (40, 8),
    ),
    case(
        "最小化 TiO2、ZnO 和 SnO2 的带隙，之和为 1，ZnO 不超过 0.3，20 次实验",
        ("band_gap", "minimise"),
        {"TiO2": FRACTION, "ZnO": (0.0, 0.3), "SnO2": FRACTION},
        (20, 1),
    ),
    case(
        "使 Cu、Ag、Au 的选择性最高，十八次实验，每批三个",
        ("selectivity", "maximise"),
        {"Cu": FRACTION, "Ag": FRACTION, "Au": FRACTION},
        (18, 3),
    ),
    case(
        "找到电导率最高的 P3HT、CNT 和 PEDOT 配比，至少 0.1 的 CNT，30 次实验，每批 5 个",
        ("conductivity", "maximise"),
        {"P3HT": FRACTION, "CNT": (0.1, 1.0), "PEDOT": FRACTION},
        (30, 5),
    ),
    case(
        "提高 Ti-Al-V 合金的屈服强度，Ti 为余量，Al 不超过 15 at.%，V 不超过 5 at.%，共 24 次实验，每批 4 个",
        ("yield_strength", "maximise"),
        {"Ti": PERCENT, "Al": (0.0, 15.0), "V": (0.0, 5.0)},
        (24, 4),
        total=100.0,
        basis="mole",
    ),
    case(
        "降低 NiFeCo 催化剂的过电位，Ni 至少 0.2，20 次实验，逐个进行",
        ("overpotential", "minimise"),
        {"Ni": (0.2, 1.0), "Fe": FRACTION, "Co": FRACTION},
        (20, 1),
    ),
    case(
        "我们希望 LiFePO4、LiMnPO4 和 LiCoPO4 的容量尽可能高，LiCoPO4 最多 0.2，预算为 30 次实验，批量为 5",
        ("capacity", "maximise"),
        {"LiFePO4": FRACTION, "LiMnPO4": FRACTION, "LiCoPO4": (0.0, 0.2)},
        (30, 5),
    ),
    case(
        "在 Cu、Ag 和 Zr 中寻找硬度最高的组成，Ag 在 0.05 到 0.2 之间，16 次实验",
        ("hardness", "maximise"),
        {"Cu": FRACTION, "Ag": (0.05, 0.2), "Zr": FRACTION},
        (16, 1),
    ),
    case(
        "最小化 PEDOT:PSS、DMSO 和 EG 的方块电阻，DMSO 质量分数不超过 0.1，12 次实验，每批 3 个",
        ("sheet_resistance", "minimise"),
        {"PEDOT:PSS": FRACTION, "DMSO": (0.0, 0.1), "EG": FRACTION},
        (12, 3),
        basis="mass",
    ),
    case(
        "最大化 Bi2Te3 和 Sb2Te3 的塞贝克系数，各组分之和为 100%，Bi2Te3 至少 30%，40 次实验，每批 8 个",
        ("seebeck_coefficient", "maximise"),
        {"Bi2Te3": (30.0, 100.0), "Sb2Te3": PERCENT},
        (40, 8),
        total=100.0,
    ),
    case(
        "最小化 Fe、Cr 和 Ni 的腐蚀速率，Cr 介于 10 和 25 wt.% 之间，Fe 为余量，24 次实验，每批 6 个",
        ("corrosion_rate", "minimise"),
        {"Fe": PERCENT, "Cr": (10.0, 25.0), "Ni": PERCENT},
        (24, 6),
        total=100.0,
        basis="mass",
    ),
    case(
        "使 PM6、Y6 和 PCBM 的效率最高，Y6 至少为 0.2，二十次实验，每批四个",
        ("efficiency", "maximise"),
        {"PM6": FRACTION, "Y6": (0.2, 1.0), "PCBM": FRACTION},
        (20, 4),
    ),
    case(
        "提高 NiCoCr 合金的断裂韧性，每种元素至少 0.2，30 次实验，一次一个",
        ("fracture_toughness", "maximise"),
        {"Ni": (0.2, 1.0), "Co": (0.2, 1.0), "Cr": (0.2, 1.0)},
        (30, 1),
    ),
    case(
        "找到透光率最高的 ZnO、SnO2 和 In2O3 配比，In2O3 不少于 0.1，12 次实验，每批 2 个",
        ("transmittance", "maximise"),
        {"ZnO": FRACTION, "SnO2": FRACTION, "In2O3": (0.1, 1.0)},
        (12, 2),
    ),
    case(
        "最大化 PEDOT:PSS 和 DMSO 的电导率，DMSO 按质量计不超过 0.1，12 次实验",
        ("conductivity", "maximise"),
        {"PEDOT:PSS": FRACTION, "DMSO": (0.0, 0.1)},
        (12, 1),
        basis="mass",
    ),
    case(
        "使 LiCl 和 LiBr 的成本最低，LiBr 不少于 0.2，十次实验",
        ("cost", "minimise"),
        {"LiCl": FRACTION, "LiBr": (0.2, 1.0)},
        (10, 1),
    ),
    case(
        "最小化 Al2O3 和 SiO2 涂层的粗糙度，15 次实验，每批 3 个",
        ("roughness", "minimise"),
        {"Al2O3": FRACTION, "SiO2": FRACTION},
        (15, 3),
    ),
]


@pytest.mark.parametrize(("request_text", "expected"), ENGLISH)
def test_an_english_request_is_read_right(request_text, expected):
    assert reading(request_text) == expected


@pytest.mark.parametrize(("request_text", "expected"), CHINESE)
def test_a_chinese_request_is_read_right(request_text, expected):
    assert reading(request_text) == expected


def test_there_are_enough_requests_of_each_language():
    assert len(ENGLISH) + len(CHINESE) >= 40
    assert len(CHINESE) >= 12


def test_a_chinese_request_keeps_the_request_as_written():
    request = "最大化 Bi2Te3 和 Sb2Te3 的塞贝克系数，Sb2Te3 不超过 0.5，16 次实验，随机种子 3"
    spec = CampaignSpec.model_validate(read_request(request))
    assert spec.request == request
    assert spec.seed == 3
    assert spec.primary_objective.unit == "µV/K"


@pytest.mark.parametrize(
    ("name", "elements"),
    [
        ("AlCoCrFeNi", ["Al", "Co", "Cr", "Fe", "Ni"]),
        ("NiTi", ["Ni", "Ti"]),
        ("PtRuOs", ["Pt", "Ru", "Os"]),
    ],
)
def test_an_element_string_is_split_into_its_elements(name, elements):
    spec = CampaignSpec.model_validate(read_request(f"Minimise the cost of the {name} alloy, 8 runs"))
    assert spec.component_names == elements


@pytest.mark.parametrize("compound", ["ZnO", "GaAs", "SiC"])
def test_a_compound_is_never_split_into_elements(compound):
    # a compound names one component: with another it is a system of two, never of its elements
    request = f"Minimise the band gap of {compound} and TiO2, 8 runs"
    spec = CampaignSpec.model_validate(read_request(request))
    assert spec.component_names == [compound, "TiO2"]
