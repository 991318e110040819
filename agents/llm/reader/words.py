"""The reader's vocabulary: numbers in words, properties and their units, filler, element strings.

Everything here is a word list or turns one word into a value; the phrase patterns that use them are
in :mod:`agents.llm.reader.patterns`.
"""

from __future__ import annotations

import re

from athanor.lab import MEASURES
from athanor.spec import formula_elements

__all__ = [
    "ANOTHER",
    "FILLER",
    "HIGHER_IS_BETTER",
    "HIGHEST_OR_LOWEST",
    "HOW_MANY",
    "LOWER_IS_BETTER",
    "MAXIMISE_OR_MINIMISE",
    "MODIFIER_WORDS",
    "PROPERTY",
    "PROPERTY_UNITS",
    "QUANTITIES",
    "STANDINS",
    "SUM_TOTAL",
    "WORD_INT",
    "WORD_VALUES",
    "basis_of_words",
    "best_direction",
    "clean",
    "element_string",
    "fmt",
    "is_modifier",
    "pct_kind",
    "property_name",
    "to_int",
    "to_number",
    "unit_text",
]

#: Default unit of well-known properties, used when the request names none.
PROPERTY_UNITS: dict[str, str] = {
    "conductivity": "S/cm",
    "resistivity": "Ohm cm",
    "sheet_resistance": "Ohm/sq",
    "band_gap": "eV",
    "yield": "%",
    "transmittance": "%",
    "thermal_conductivity": "W/(m K)",
    "seebeck_coefficient": "µV/K",
    "density": "g/cm^3",
}

# Property spellings that name a canonical property.
_PROPERTY_ALIASES: dict[str, str] = {
    "electrical_conductivity": "conductivity",
    "electric_conductivity": "conductivity",
    "electrical_resistivity": "resistivity",
    "bandgap": "band_gap",
    "band-gap": "band_gap",
    "seebeck": "seebeck_coefficient",
}

#: Properties a bound may name without being an objective (measured or well-known ones).
QUANTITIES = frozenset(PROPERTY_UNITS) | {q for quantities in MEASURES.values() for q in quantities}

#: The last word of properties whose best value is the highest, for "the best X" (no other direction).
HIGHER_IS_BETTER = frozenset(
    """conductivity selectivity yield efficiency pce hardness strength toughness ductility capacity
    transmittance coefficient zt merit activity stability lifetime mobility absorbance absorption
    luminescence photoluminescence brightness output power density_of_states sensitivity performance
    retention uptake permeability conversion modulus elongation coverage crystallinity""".split()
)
#: The last word of properties whose best value is the lowest, for "the best X".
LOWER_IS_BETTER = frozenset(
    """resistivity resistance overpotential cost loss losses degradation corrosion roughness hysteresis
    impedance toxicity defects leakage""".split()
)

_ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
#: Each number word and its value.
WORD_VALUES: dict[str, int] = {
    **{w: i + 1 for i, w in enumerate(_ONES)},
    **{w: i + 10 for i, w in enumerate(_TEENS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_TENS)},
    "hundred": 100,
}
#: A whole number written in words, "twenty-five" or "a hundred" (a regular expression).
WORD_INT = (
    rf"(?:(?:a|one)\s+hundred|hundred|(?:{'|'.join(_TENS)})(?:[-\s](?:{'|'.join(_ONES)}))?"
    rf"|{'|'.join(_TEENS)}|{'|'.join(_ONES)})(?![\w-])"
)

#: Leftover words that carry no meaning for the spec.
FILLER = frozenset(
    """a an the please and with blend mixture mix composite alloy system formulation film solution of for
    to in on by using i we you want would like let's lets let us me could can campaign run do then also so
    that our my ternary binary quaternary where while such subject constraint constraints bound bounds
    is are be should must keep keeping try plan optimisation optimization here following objective goal
    aim need composition compositions""".split()
)

#: English words that, joined by '-' to a name, say what a system is like, not what is in it: a
#: "Fe-based alloy" or a "Cu-rich film" names no components. Past participles (reinforced, doped,
#: coated, ...) are recognised by their ending and need no entry here.
MODIFIER_WORDS = frozenset(
    "based rich poor lean free type like only grade containing bearing forming dominant".split()
)

_USED = "\x00"

#: Stand-ins a refusal's suggestion uses for what the request does not say, each with the words
#: that replace it when the suggestion is checked by reading it.
PROPERTY = "<property>"
HIGHEST_OR_LOWEST = "<highest or lowest>"
MAXIMISE_OR_MINIMISE = "<Maximise or minimise>"
HOW_MANY = "<how many>"
ANOTHER = "<another component>"
SUM_TOTAL = "<fractions sum to 1, or summing to 100 %>"
STANDINS: dict[str, str] = {
    PROPERTY: "yield",
    HIGHEST_OR_LOWEST: "highest",
    MAXIMISE_OR_MINIMISE: "Maximise",
    HOW_MANY: "20",
    ANOTHER: "Other1",
    "<A>": "A",
    "<B>": "B",
    "<C>": "C",
    SUM_TOTAL: "summing to 100 %",
}


def to_int(text: str) -> int:
    """A whole number written in digits or words: ``"12"``, ``"twenty-five"``, ``"a hundred"``."""
    words = re.sub(r"\s+", " ", text.strip().lower())
    if words.isdigit():
        return int(words)
    if words.endswith("hundred"):
        return 100
    return sum(WORD_VALUES[part] for part in re.split(r"[-\s]", words))


def to_number(text: str) -> float:
    """A number in digits, or ``one`` / ``a hundred``."""
    words = re.sub(r"\s+", " ", text.strip().lower())
    if words == "one":
        return 1.0
    if words.endswith("hundred"):
        return 100.0
    return float(words)


def pct_kind(marker: str | None) -> str | None:
    """The kind of a percent marker: ``"at.%"``, ``"wt.%"``, ``"mol.%"``, ``"vol.%"`` or ``"%"``.

    Returns:
        None when there is no marker.
    """
    if not marker or not marker.strip():
        return None
    m = marker.strip().lower()
    for prefix, kind in (
        ("at", "at.%"),
        ("wt", "wt.%"),
        ("weight", "wt.%"),
        ("mass", "wt.%"),
        ("mol", "mol.%"),
        ("vol", "vol.%"),
    ):
        if m.startswith(prefix):
            return kind
    return "%"


def unit_text(text: str | None) -> str | None:
    """A unit as the spec stores it (``percent`` is ``%``), or None."""
    if not text:
        return None
    return "%" if text == "percent" else re.sub(r"\s+", " ", text)


def property_name(words: str) -> str:
    """The objective identifier for property words, e.g. ``"Band gap"`` -> ``band_gap``."""
    ident = re.sub(r"[\s-]+", "_", words.strip().lower())
    return _PROPERTY_ALIASES.get(ident, ident)


def is_modifier(part: str) -> bool:
    """Whether one part of a hyphen-joined name is an English modifier word (``based``, ``reinforced``).

    An element or a formula (pymatgen reads ``Fe``, ``TiO2``) is never one; otherwise a word from
    :data:`MODIFIER_WORDS` or a past participle (``doped``, ``coated``: letters, not all capitals,
    ending in "ed") is.
    """
    word = part.lower()
    participle = part.isalpha() and not part.isupper() and len(word) > 4 and word.endswith("ed")
    if word not in MODIFIER_WORDS and not participle:
        return False
    return formula_elements(part) is None


def element_string(name: str) -> list[str] | None:
    """The elements of a string of metal symbols such as ``AlCoCrFeNi``, in the order written.

    pymatgen's composition parsing reads the string; it counts as an element string when it holds
    no digits, at least two different elements, each once, and every one of them a metal, so that a
    compound such as ``ZnO`` or ``GaAs`` stays one component.

    Returns:
        The element symbols, or None when ``name`` is not such a string.
    """
    if not name.isalpha():
        return None
    atoms = formula_elements(name)
    if atoms is None or len(atoms) < 2 or any(count != 1 for count in atoms.values()):
        return None
    from pymatgen.core import Element

    symbols = re.findall(r"[A-Z][a-z]?", name)
    if "".join(symbols) != name or len(set(symbols)) != len(symbols):
        return None
    return symbols if all(Element(s).is_metal for s in symbols) else None


def best_direction(words: str) -> str | None:
    """Which way "the best ``words``" points: by the property's last word, or None when unknown."""
    last = words.split()[-1].lower() if words.split() else ""
    if last in HIGHER_IS_BETTER:
        return "maximise"
    if last in LOWER_IS_BETTER:
        return "minimise"
    return None


#: What a basis word says the fractions are fractions of (``CampaignSpec.basis``).
_BASIS_WORDS = {"mass": "mass", "weight": "mass", "mole": "mole", "molar": "mole", "atom": "mole"}
_BASIS_WORDS |= {"atomic": "mole", "volume": "volume"}


def basis_of_words(text: str) -> str | None:
    """The basis words name ("by mass", "mole fractions"): ``mass``, ``mole`` or ``volume``, or None."""
    for word in re.findall(r"[a-z]+", text.lower()):
        basis = _BASIS_WORDS.get(word) or _BASIS_WORDS.get(word.removesuffix("s"))
        if basis is not None:
            return basis
    return None


def clean(text: str) -> str:
    """A phrase as quoted in messages: used marks and runs of spaces made single spaces."""
    return re.sub(r"\s+", " ", text.replace(_USED, " ")).strip(" ,;")


def fmt(value: float) -> str:
    """A number as messages show it (``0.3``, ``15``)."""
    return f"{value:g}"
