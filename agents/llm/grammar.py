"""A controlled-English grammar for campaign requests, read without a language model.

The offline back end turns a request such as::

    Maximise the conductivity of a P3HT/CNT blend of P3HT, D1, D2, D6 and D8
    (fractions sum to 1, P3HT at least 0.3), 30 experiments in batches of 5

into the fields of a :class:`athanor.spec.CampaignSpec`. Each kind of phrase (objectives, thresholds
and outcome constraints, components, sum rule, bounds, linear constraints, budget, batch size, seed,
target, how many components may be present, grid step, categorical choices) is matched by its own set
of patterns, and every match marks the characters it used. Whatever is left at the end must be filler
(articles, "and", "please", punctuation, ...); anything else makes the request refused with
:class:`athanor.errors.RequestNotUnderstood`, quoting the unread words, saying what was read and
showing a phrasing that works. The user-facing description is ``docs/request-grammar.md``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from athanor.errors import RequestNotUnderstood
from athanor.lab import MEASURES
from athanor.spec import formula_elements

__all__ = ["EXAMPLE_REQUEST", "PROPERTY_UNITS", "read_request"]

#: A request the grammar reads; refusals show it as a phrasing that works.
EXAMPLE_REQUEST = (
    "Maximise the conductivity of a blend of P3HT, D1 and D2 (fractions sum to 1, P3HT at least 0.5),"
    " 30 experiments in batches of 5"
)

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

_DOCS = "docs/request-grammar.md"

# ---------------------------------------------------------------------------------------------------
# Building blocks. Every pattern is compiled case-insensitive; component names keep their case.
# ---------------------------------------------------------------------------------------------------

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
_WORD_VALUES: dict[str, int] = {
    **{w: i + 1 for i, w in enumerate(_ONES)},
    **{w: i + 10 for i, w in enumerate(_TEENS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_TENS)},
    "hundred": 100,
}
_WORD_INT = (
    rf"(?:(?:a|one)\s+hundred|hundred|(?:{'|'.join(_TENS)})(?:[-\s](?:{'|'.join(_ONES)}))?"
    rf"|{'|'.join(_TEENS)}|{'|'.join(_ONES)})(?![\w-])"
)
# A sign in front of a number is never read, so "-5 experiments" is refused rather than read as 5.
_INT = rf"(?:(?<![\w.+-])\d+(?![\d.]*\d)(?![\w])|(?<![\w-]){_WORD_INT})"
_NUM = r"(?<![\w.+-])(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?![\w])"
_SIGNED = r"(?<![\w.+-])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?![\w])"  # targets may be negative
_ONE_OR_HUNDRED = rf"(?:{_NUM}|one|(?:a\s+|one\s+)?hundred)"


def _pct(group: str, optional: bool = True) -> str:
    """A percent marker after a number (``10 at.%``), captured as ``group``."""
    return (
        rf"(?P<{group}>\s*(?:(?:at|wt|mol|vol|mass|atomic|weight|molar|volume)\.?\s*(?:%|percent)"
        rf"|%|percent|per\s*cent|pct)(?![\w])){'?' if optional else ''}"
    )


# Words that never start a component name (any case), and short ones that do not when lowercase
# (so that the elements In, As, At, No, Be can still be named with a capital).
_RESERVED_ANY_CASE = (
    "the|and|with|from|for|into|onto|blend|mixture|mix|alloy|composite|system|components?|ingredients?"
    "|fractions?|percent|percentages?|sum|sums|summing|total|experiments?|runs?|samples?|measurements?"
    "|trials?|batch(?:es)?|size|seed|budget|least|most|more|less|than|not|each|every|all|both|together"
    "|combined|jointly|target|until|once|when|maximi[sz]e|minimi[sz]e|between|per|time|please|content"
    "|amount|share|proportion|concentration|loading|max|min|maximum|minimum|below|above|under|over|upper"
    "|lower|bound|exactly|using|containing|mixing|made|then|where|while|keeping|that|this|its|are|one"
    "|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|forty|fifty|hundred|twelve|fifteen"
)
_RESERVED_LOWER = "a|an|as|at|be|by|in|is|it|no|of|on|or|to|up|we|i"
_NOT_RESERVED = rf"(?!(?:{_RESERVED_ANY_CASE})(?![\w:-]))(?!(?-i:{_RESERVED_LOWER})(?![\w:-]))"
#: A component name in a list or a bound: letters, digits, '_', '-' and ':' (``PEDOT:PSS``).
_NAME = rf"(?<![\w:.-]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?:[-:][A-Za-z0-9_]+)*(?![\w])"
#: A component name inside a hyphen/slash-joined system name such as Cu-Ag-Zr.
_PART = rf"(?<![\w:.]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)*(?![\w])"
_AND = r"(?:and|&)"
_NAME_LIST = rf"{_NAME}(?:\s*,\s*{_NAME})*\s*,?\s*{_AND}\s+{_NAME}"
_OPEN_LIST = rf"{_NAME}(?:\s*,\s*{_NAME})*(?:\s*,?\s*{_AND}\s+{_NAME})?"
_EACH = r"(?:(?:each|every|any)\s+(?:component|ingredient)|all\s+(?:components|ingredients)|each(?:\s+one)?)"
_NOUN = r"(?:experiments?|runs?|samples?|measurements?|trials?|compositions?|evaluations?)"
_SYSTEM_NOUN = (
    r"(?:blend|alloy|mixture|mix|composite|system|formulation|film|thin\s+film|solution|ink|glass|ceramic"
    r"|compound|coating|electrolyte|catalyst|dispersion)(?:es|s)?"
)
_COPULA = r"(?:(?:is|are|be|should\s+be|must\s+be|stays?|kept|remains?)\s+)?"

_UP_WORDS = [
    r"at\s+most",
    r"no\s+more\s+than",
    r"not\s+more\s+than",
    r"no\s+higher\s+than",
    r"no\s+greater\s+than",
    r"not\s+above",
    r"not\s+exceeding",
    r"up\s+to",
    r"less\s+than",
    r"lower\s+than",
    r"below",
    r"under",
    r"max(?:imum)?(?:\s+of)?",
    r"upper\s+bound(?:\s+of)?",
    r"capped\s+at",
    r"limited\s+to",
]
_LOW_WORDS = [
    r"at\s+least",
    r"no\s+less\s+than",
    r"not\s+less\s+than",
    r"no\s+lower\s+than",
    r"not\s+below",
    r"more\s+than",
    r"greater\s+than",
    r"higher\s+than",
    r"above",
    r"over",
    r"min(?:imum)?(?:\s+of)?",
    r"lower\s+bound(?:\s+of)?",
]
_UP_SYMBOLS = ["<=", "=<", "≤", "<"]
_LOW_SYMBOLS = [">=", "=>", "≥", ">"]
_CMP = (
    rf"(?P<cmp>{'|'.join(map(re.escape, _UP_SYMBOLS + _LOW_SYMBOLS))}"
    rf"|(?:{'|'.join(_UP_WORDS + _LOW_WORDS)})(?![\w]))"
)
_UP_RE = re.compile(rf"(?:{'|'.join(map(re.escape, _UP_SYMBOLS))}|{'|'.join(_UP_WORDS)})", re.I)

# Units are case-sensitive; a slash unit is built from known unit symbols so that "P3HT/CNT" is not one.
_UNIT_ATOM = (
    r"(?:[pnµumkMG]?(?:S|W|V|A|g|J|eV|Ohm|Ω|Pa|N|C|F|K|m|mol|L|Wh|Ah|s|h|cd)|cm|mm|nm|sq)(?:\^?-?\d)?"
)
_UNIT = (
    rf"(?-i:(?:{_UNIT_ATOM}(?:[·*]{_UNIT_ATOM})*(?:/\(?{_UNIT_ATOM}(?:[·*\s]{_UNIT_ATOM})*\)?)+"
    r"|eV|meV|HV|GPa|MPa|kPa|°C|nm|µm|ppm|mV|mA|dB|a\.u\.|Ohm\s+cm|Ω\s*cm|Ohm|Ω|%|percent|K)(?![\w/]))"
)

_UP_VERBS = r"maximi[sz]e|increase|raise|boost|enhance"
_DOWN_VERBS = r"minimi[sz]e|reduce|decrease|lower"
_SUPERLATIVE_UP = r"highest|largest|greatest|maximum|max"
_SUPERLATIVE_DOWN = r"lowest|smallest|least|minimum|min"
_FIND = (
    r"find\s+(?:the\s+)?(?:(?:composition|blend|mixture|alloy|formulation|recipe|sample)\s+"
    r"(?:with|that\s+gives|giving|that\s+has|of)\s+(?:the\s+)?)?"
    rf"(?:{_SUPERLATIVE_UP}|{_SUPERLATIVE_DOWN})"
)
_PROP_STOP = (
    r"of|for|in|until|target|with|by|at|on|using|while|from|across|over|within|and|or|to|when|once|as"
    r"|subject|where|given|keeping|seed|budget|through|via|among|between|per|the|a|an|is|varying|mixing"
    r"|please|experiments?|runs?|samples?|batch(?:es)?|then|so|stop|whilst|bounds?|limits?|it|its|them"
)
_PROP_WORD = rf"(?!(?:{_PROP_STOP})(?![\w-]))[A-Za-z]+(?:-[A-Za-z]+)*(?![\w])"
_PROP = rf"{_PROP_WORD}(?:\s+{_PROP_WORD}){{0,3}}"

# Leftover words that carry no meaning for the spec.
_FILLER = frozenset(
    """a an the please and with blend mixture mix composite alloy system formulation film solution of for
    to in on by using i we you want would like let's lets let us me could can campaign run do then also so
    that our my ternary binary quaternary where while such subject constraint constraints bound bounds
    is are be should must keep keeping try plan optimisation optimization here following objective goal
    aim""".split()
)
_WORD = re.compile(r"[^\s\x00,;:.!?()\[\]{}\"'“”‘’/\-–—]+")
_USED = "\x00"
# Same-length replacements, so that offsets in the working text are offsets in the request.
_SAME_LENGTH = str.maketrans({"–": "-", "—": "-", "−": "-", "’": "'", "\u00a0": " ", "\t": " ", "\n": " "})


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- budget, batch size, initial design, seed -------------------------------------------------------
_BATCH_PATTERNS = [
    _rx(rf"(?<!\w)(?:(?:in|with)\s+)?(?:batch(?:es)?|rounds?)\s+of\s+(?P<n>{_INT})(?:\s+(?:{_NOUN}|each))?"),
    _rx(rf"(?<!\w)(?:(?:a|the|with)\s+)?batch[\s-]*size\s*(?:of|is|:|=)?\s*(?P<n>{_INT})"),
    _rx(
        rf"(?P<n>{_INT})\s+(?:{_NOUN}\s+)?(?:at\s+a\s+time|at\s+once|in\s+parallel"
        r"|(?:per|in\s+each|each)\s+(?:batch|round|iteration|cycle))(?![\w])"
    ),
    _rx(r"(?<!\w)(?:one\s+by\s+one|one\s+after\s+(?:the\s+)?(?:other|another)|sequentially)(?![\w])"),
]
_INITIAL_PATTERNS = [
    _rx(
        rf"(?<!\w)(?:(?:starting|start|beginning|begin)\s+with\s+)?(?:(?:an?|the)\s+)?"
        rf"(?:initial|random|space-filling)\s+design\s+of\s+(?P<n>{_INT})(?:\s+{_NOUN})?"
    ),
    _rx(
        rf"(?<!\w)(?:(?:starting|start|beginning|begin)\s+with\s+)?(?P<n>{_INT})\s+"
        rf"(?:initial|random|space-filling)\s+{_NOUN}(?![\w])"
    ),
]
_BUDGET_PATTERNS = [
    _rx(
        rf"(?<!\w)(?:(?:a|an|the)\s+)?(?:(?:total\s+)?budget\s+(?:of\s+|is\s+)?|(?:total\s+)?budget\s*[:=]\s*"
        rf"|(?:at\s+most|up\s+to|no\s+more\s+than|a\s+maximum\s+of|max(?:imum)?(?:\s+of)?)\s+)?"
        rf"(?P<n>{_INT})\s+{_NOUN}(?![\w])(?:\s+(?:in\s+total|total|overall|altogether|max(?:imum)?)(?![\w]))?"
    ),
    _rx(rf"(?<!\w)(?:(?:a|an|the)\s+)?(?:total\s+)?budget\s*(?:of|is|:|=)?\s*(?P<n>{_INT})"),
]
_SEED = _rx(
    r"(?<!\w)(?:(?:with|using)\s+)?(?:(?:a|the)\s+)?(?:random\s+)?seed\s*(?:of|is|=|:)?\s*"
    r"(?P<n>(?<![\w.])\d+(?![\d.]*\d)(?![\w]))"
)

# --- sum rule -----------------------------------------------------------------------------------------
_SUM_SUBJECT = (
    r"(?:(?:the\s+)?(?:(?:mole|molar|mass|weight|volume|atomic)\s+)?"
    r"(?:fractions?|amounts?|proportions?|percentages?|compositions?|components?|concentrations?|shares?)"
    r"\s+(?:must\s+|should\s+|will\s+|that\s+|which\s+)?)"
)
_SUM_PATTERNS = [
    _rx(
        rf"(?<!\w){_SUM_SUBJECT}?(?:sum(?:s|ming)?(?:\s+up)?\s+to|add(?:s|ing)?\s+up\s+to"
        rf"|total(?:s|ling|ing)?(?:\s+to)?)\s+(?P<total>{_ONE_OR_HUNDRED}){_pct('pct')}"
    ),
    _rx(
        r"(?<!\w)(?:(?:amounts?|compositions?|concentrations?|proportions?)\s+(?:are\s+|given\s+)?)?"
        r"(?:as|in)\s+(?:(?:mole|molar|mass|weight|volume)\s+)?fractions(?:\s+of\s+(?:one|1))?(?![\w])"
    ),
    _rx(
        r"(?<!\w)(?:amounts?|compositions?|concentrations?|proportions?)\s+(?:are\s+|given\s+)?(?:in|as)"
        rf"{_pct('pct', optional=False)}(?:ages?)?"
    ),
    _rx(
        r"(?<!\w)(?:no\s+sum\s+rule|independent\s+amounts|(?:the\s+)?(?:amounts?|components?)\s+(?:are\s+)?"
        r"independent|(?:the\s+)?(?:amounts?|fractions)\s+need\s+not\s+sum\s+to\s+(?:one|1|100\s*%?))(?![\w])"
    ),
]

# --- objective and target -------------------------------------------------------------------------------
_OBJECTIVE = _rx(
    rf"(?<!\w)(?P<verb>{_UP_VERBS}|{_DOWN_VERBS}|{_FIND})(?![\w])\s+(?:the\s+)?(?P<prop>{_PROP})"
    rf"(?:\s*\(\s*(?P<u1>{_UNIT})\s*\)|\s+(?:in|measured\s+in)\s+(?P<u2>{_UNIT}))?"
)
_UP_RELATIONS = (
    r"exceeds|passes|tops|rises\s+(?:above|over)|goes\s+(?:above|over)|gets\s+(?:above|over)"
    r"|is\s+(?:above|over|at\s+least|greater\s+than|higher\s+than|more\s+than)|>=|≥|>"
)
_DOWN_RELATIONS = (
    r"drops\s+(?:below|under)|falls\s+(?:below|under)|goes\s+(?:below|under)|gets\s+(?:below|under)"
    r"|is\s+(?:below|under|at\s+most|less\s+than|lower\s+than)|<=|≤|<"
)
_NEUTRAL_RELATIONS = r"reaches|hits|gets\s+to|rises\s+to|drops\s+to|falls\s+to"
_TARGET_PATTERNS = [
    _rx(
        rf"(?<!\w)(?:(?:with|and)\s+)?(?:(?:a|an|the)\s+)?target(?:\s+value)?(?:\s+(?P<prop>{_PROP}))?"
        rf"(?:\s+(?:of|is|at)|\s*[:=])?\s*(?P<v>{_SIGNED})(?:\s*(?P<u>{_UNIT}))?"
    ),
    _rx(
        rf"(?<!\w)(?:(?:and\s+)?stop\s+)?(?:until|once|when|as\s+soon\s+as)\s+(?:it|(?:the\s+)?(?P<prop>{_PROP}))"
        rf"\s+(?P<rel>{_UP_RELATIONS}|{_DOWN_RELATIONS}|{_NEUTRAL_RELATIONS})\s*(?P<v>{_SIGNED})"
        rf"(?:\s*(?P<u>{_UNIT}))?"
    ),
    _rx(
        rf"(?<!\w)(?:(?:and\s+)?stop\s+)?(?:until|once|when)\s+(?:we|you)\s+(?:reach|hit|get\s+to)\s+"
        rf"(?P<v>{_SIGNED})(?:\s*(?P<u>{_UNIT}))?"
    ),
]

# --- more objectives after "and", thresholds and outcome constraints ---------------------------------
#: "..., (the) yield and (the) transmittance": another objective with the verb of the one it follows.
_OBJECTIVE_MORE = _rx(
    rf"(?:\s*,\s*(?:(?:and|&)\s+)?|\s+(?:and|&)\s+)(?P<the>the\s+)?(?P<prop>{_NOT_RESERVED}{_PROP})"
    rf"(?:\s*\(\s*(?P<u1>{_UNIT})\s*\)|\s+(?:in|measured\s+in)\s+(?P<u2>{_UNIT}))?"
)
_PROP_SHORTEST = rf"{_PROP_WORD}(?:\s+{_PROP_WORD}){{0,3}}?"
#: "conductivity at least 500 S/cm": a threshold of an objective, or an outcome constraint.
_QUANTITY_BOUND = _rx(
    rf"(?<!\w)(?:(?:the|a|an)\s+)?(?P<prop>{_PROP_SHORTEST})\s*{_COPULA}{_CMP}\s*(?P<v>{_SIGNED})"
    rf"(?:\s*(?P<u>{_UNIT}))?"
)
#: Properties a bound may name without being an objective (measured or well-known ones).
_QUANTITIES = frozenset(PROPERTY_UNITS) | {q for quantities in MEASURES.values() for q in quantities}

# --- constraints and bounds --------------------------------------------------------------------------------
_TERM = rf"(?:{_NUM}\s*\*?\s*)?{_NAME}"
_PLUS_CONSTRAINT = _rx(
    rf"(?P<lhs>{_TERM}(?:\s*\+\s*{_TERM})+)\s*(?:(?:together|combined|in\s+total)\s+)?{_COPULA}"
    rf"{_CMP}\s*(?P<v>{_NUM}){_pct('pct')}"
)
_SUM_OF_CONSTRAINT = _rx(
    rf"(?<!\w)(?:the\s+)?(?:sum|total)\s+of\s+(?P<names>{_NAME_LIST})\s*{_COPULA}{_CMP}\s*(?P<v>{_NUM})"
    rf"{_pct('pct')}"
)
_GROUP_BOUND = _rx(
    rf"(?P<names>{_NAME_LIST})\s+(?P<mode>(?:each|both|all|together|combined|jointly|in\s+total)\s+)?"
    rf"{_COPULA}{_CMP}\s*(?P<v>{_NUM}){_pct('pct')}(?P<mode2>\s+(?:each|apiece|together|combined|in\s+total))?"
    r"(?![\w])"
)
_SUBJECT_PREFIX = (
    r"(?:(?:the\s+)?(?:fraction|amount|content|share|proportion|concentration|loading)\s+of\s+)?"
)
_SUBJECT_SUFFIX = r"(?:\s+(?:content|fraction|amount|share|loading|concentration))?"
_SUBJECT = rf"{_SUBJECT_PREFIX}(?P<name>{_EACH}|{_NAME}){_SUBJECT_SUFFIX}"
_LE = r"(?:<=|=<|≤|<)"
_RANGE_PATTERNS = [
    _rx(rf"(?P<a>{_NUM}){_pct('pa')}\s*{_LE}\s*(?P<name>{_NAME})\s*{_LE}\s*(?P<b>{_NUM}){_pct('pb')}"),
    _rx(
        rf"{_SUBJECT}\s*{_COPULA}(?:between|within)\s+(?P<a>{_NUM}){_pct('pa')}\s+and\s+(?P<b>{_NUM})"
        rf"{_pct('pb')}"
    ),
    _rx(rf"{_SUBJECT}\s*{_COPULA}from\s+(?P<a>{_NUM}){_pct('pa')}\s+to\s+(?P<b>{_NUM}){_pct('pb')}"),
    _rx(rf"{_SUBJECT}\s*{_COPULA}in\s*\[\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*\]{_pct('pb')}"),
]
_BOUND = _rx(rf"{_SUBJECT}\s*{_COPULA}{_CMP}\s*(?P<v>{_NUM}){_pct('pct')}")
_BOUND_REVERSED = _rx(rf"(?<!\w){_CMP}\s*(?P<v>{_NUM}){_pct('pct')}\s+(?:of\s+)?(?P<name>{_NAME})")

# --- how many components may be present, grid step, categorical choices -----------------------------
_CHOOSE_VERB = r"(?:choose|choosing|pick|picking|select|selecting|use|using)"
_AT_MOST = r"(?:at\s+most|up\s+to|no\s+more\s+than|not\s+more\s+than|a\s+maximum\s+of|max(?:imum)?(?:\s+of)?)"
_PRESENT_NOUN = r"(?:elements?|components?|ingredients?|constituents?)"
_CARDINALITY_PATTERNS = [
    # "choose at most 3 of Cu, Ag, Zr, Ni and Co": the list is also the component list
    _rx(
        rf"(?<!\w)(?:and\s+)?{_CHOOSE_VERB}\s+{_AT_MOST}\s+(?P<n>{_INT})\s+(?:{_PRESENT_NOUN}\s+)?"
        rf"(?:of|from|among)\s+(?:the\s+)?(?P<list>{_NAME_LIST})"
    ),
    # "at most 3 elements at once", "using at most 2 of them", "with at most 3 non-zero components"
    _rx(
        rf"(?<!\w)(?:(?:{_CHOOSE_VERB}|with)\s+)?{_AT_MOST}\s+(?P<n>{_INT})\s+(?:(?:non-?zero|active|present)\s+)?"
        rf"(?:{_PRESENT_NOUN}|of\s+them)(?:\s+(?:at\s+(?:a\s+time|once)|present|non-?zero|active"
        r"|per\s+(?:sample|composition|experiment)|in\s+(?:each|any|one)\s+(?:sample|composition|experiment)))?"
        r"(?![\w])"
    ),
]
_RESOLUTION_PATTERNS = [
    _rx(
        rf"(?<!\w)(?:(?:in|with|on|using)\s+)?(?:(?:a|the)\s+)?(?:grid\s+)?steps?(?:\s+size)?\s*(?:of|is|:|=)?\s*"
        rf"(?P<v>{_NUM}){_pct('pct')}"
    ),
    _rx(rf"(?<!\w)(?:rounded\s+)?to\s+the\s+nearest\s+(?P<v>{_NUM}){_pct('pct')}"),
    _rx(
        rf"(?<!\w)(?:(?:with|at|on)\s+)?(?:(?:a|the)\s+)?(?:grid\s+)?resolution\s*(?:of|is|:|=)?\s*"
        rf"(?P<v>{_NUM}){_pct('pct')}"
    ),
    _rx(rf"(?<!\w)(?:on\s+)?(?:an?\s+)?(?P<v>{_NUM}){_pct('pct')}\s+grid(?![\w])"),
]
_VARIABLE = rf"(?<![\w:.-]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*(?![\w])"
_CHOICE = r"(?<![\w°.+-])(?!(?:or|and)(?![\w°+-]))[A-Za-z0-9°][\w°.+-]*(?<![.+-])(?![\w°])"
_CATEGORY_PATTERNS = [
    # "annealing one of none, 150C and 200C", "solvent: toluene, xylene", "atmosphere either N2 or air";
    # a colon between two letters is inside a name (PEDOT:PSS), not before choices
    _rx(
        rf"(?P<var>{_VARIABLE})(?:(?!:\w)\s*:\s*|\s+(?:(?:is|are)\s+)?(?:one\s+of|either|(?:chosen\s+)?from|among)\s+)"
        rf"(?P<choices>{_CHOICE}(?:(?:\s*,\s*|\s*,?\s*(?:or|and)\s+){_CHOICE})+)"
    ),
    # "annealing none, 150C or 200C": without a marker the last choice follows "or"
    _rx(rf"(?P<var>{_VARIABLE})\s+(?P<choices>{_CHOICE}(?:\s*,\s*{_CHOICE})*\s*,?\s*or\s+{_CHOICE})"),
]
_SPLIT_CHOICES = re.compile(r"\s*,?\s*(?:or|and)\s+|\s*,\s*", re.IGNORECASE)

# --- components -----------------------------------------------------------------------------------
_SYSTEM = _rx(
    r"(?<!\w)(?P<prefix>(?:(?:of|for|in|on)\s+)?(?:(?:a|an|the)\s+)?)"
    r"(?:(?:binary|ternary|quaternary|quinary|multi-?component|high-entropy)\s+)?"
    rf"(?P<names>{_PART}(?:\s*[-/]\s*{_PART})+)(?:\s+(?P<noun>{_SYSTEM_NOUN})(?![\w]))?"
)
_LIST = _rx(
    rf"(?<!\w)(?P<prefix>of|from|for|mixing|containing|components?|ingredients?|{_SYSTEM_NOUN}\s+with)\s*:?\s+"
    r"(?:(?:the\s+)?(?:components?|ingredients?)\s*:?\s*)?"
    rf"(?P<list>{_OPEN_LIST})"
)
#: English words that, joined by '-' to a name, say what a system is like, not what is in it: a
#: "Fe-based alloy" or a "Cu-rich film" names no components. Past participles (reinforced, doped,
#: coated, ...) are recognised by their ending and need no entry here.
_MODIFIER_WORDS = frozenset(
    "based rich poor lean free type like only grade containing bearing forming dominant".split()
)
_UNIT_RE = re.compile(_UNIT)
_SPLIT_LIST = re.compile(rf"\s*,\s*{_AND}\s+|\s*,\s*|\s+{_AND}\s+", re.IGNORECASE)
_VERB_WORDS = re.compile(rf"(?<!\w)(?:(?P<up>{_UP_VERBS})|(?P<down>{_DOWN_VERBS}))(?![\w])", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------
# What was read
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Amount:
    value: float
    pct: str | None  # None when the number carries no percent marker, else "%", "at.%", "wt.%", ...


@dataclass
class _Bound:
    name: str  # a component name, or "*" for every component
    lower: _Amount | None
    upper: _Amount | None
    phrase: str


@dataclass
class _Constraint:
    coefficients: dict[str, float]
    operator: str
    rhs: _Amount
    phrase: str


@dataclass
class _Objective:
    name: str
    words: str
    direction: str
    unit: str | None
    phrase: str


@dataclass
class _Target:
    value: float
    unit: str | None
    prop: str | None
    direction: str | None  # the way the phrase points ("exceeds": maximise), if it points one way
    phrase: str


@dataclass
class _QuantityBound:
    name: str
    words: str
    operator: str  # ">=" or "<="
    value: float
    unit: str | None
    phrase: str


@dataclass
class _SumRule:
    total: float | None  # None: no sum rule
    pct: str | None
    phrase: str


@dataclass
class _Read:
    objectives: list[_Objective] = field(default_factory=list)
    targets: list[_Target] = field(default_factory=list)
    quantity_bounds: list[_QuantityBound] = field(default_factory=list)
    systems: list[tuple[list[str], str]] = field(default_factory=list)
    descriptions: list[tuple[str, str]] = field(default_factory=list)  # label, the modifier word in it
    lists: list[tuple[list[str], str]] = field(default_factory=list)
    bounds: list[_Bound] = field(default_factory=list)
    constraints: list[_Constraint] = field(default_factory=list)
    sum_rules: list[_SumRule] = field(default_factory=list)
    budgets: list[tuple[int, str]] = field(default_factory=list)
    batches: list[tuple[int, str]] = field(default_factory=list)
    initials: list[tuple[int, str]] = field(default_factory=list)
    seeds: list[tuple[int, str]] = field(default_factory=list)
    cardinalities: list[tuple[int, str]] = field(default_factory=list)
    resolutions: list[tuple[_Amount, str]] = field(default_factory=list)
    categories: list[tuple[int, str, list[str], str]] = field(default_factory=list)  # start, name, choices


def _to_int(text: str) -> int:
    words = re.sub(r"\s+", " ", text.strip().lower())
    if words.isdigit():
        return int(words)
    if words.endswith("hundred"):
        return 100
    total = 0
    for part in re.split(r"[-\s]", words):
        total += _WORD_VALUES[part]
    return total


def _to_number(text: str) -> float:
    words = re.sub(r"\s+", " ", text.strip().lower())
    if words == "one":
        return 1.0
    if words.endswith("hundred"):
        return 100.0
    return float(words)


def _pct_kind(marker: str | None) -> str | None:
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


def _unit(text: str | None) -> str | None:
    if not text:
        return None
    return "%" if text == "percent" else re.sub(r"\s+", " ", text)


def _names_of(text: str) -> list[str]:
    return [n for n in _SPLIT_LIST.split(text.strip()) if n]


def _is_modifier(part: str) -> bool:
    """Whether one part of a hyphen-joined name is an English modifier word (``based``, ``reinforced``).

    An element or a formula (pymatgen reads ``Fe``, ``TiO2``) is never one; otherwise a word from
    :data:`_MODIFIER_WORDS` or a past participle (``doped``, ``coated``: letters, not all capitals,
    ending in "ed") is.
    """
    word = part.lower()
    participle = part.isalpha() and not part.isupper() and len(word) > 4 and word.endswith("ed")
    if word not in _MODIFIER_WORDS and not participle:
        return False
    return formula_elements(part) is None


def _property_name(words: str) -> str:
    """The objective identifier for property words, e.g. ``"Band gap"`` -> ``band_gap``."""
    ident = re.sub(r"[\s-]+", "_", words.strip().lower())
    return _PROPERTY_ALIASES.get(ident, ident)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace(_USED, " ")).strip(" ,;")


def _fmt(value: float) -> str:
    return f"{value:g}"


class _Parser:
    """Reads one request; ``problems`` collects everything that stops it being a spec."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.work = text.translate(_SAME_LENGTH)
        self.read = _Read()
        self.problems: list[str] = []
        self._objective_ends: dict[int, _Objective] = {}

    # -- scanning -------------------------------------------------------------------------------------
    def scan(self, pattern: re.Pattern[str], handler: Callable[[re.Match[str]], bool]) -> None:
        """Run ``handler`` on each match of ``pattern``; mark the match used unless it returns False."""
        for match in list(pattern.finditer(self.work)):
            if handler(match):
                start, end = match.span()
                self.work = self.work[:start] + _USED * (end - start) + self.work[end:]

    def phrase(self, match: re.Match[str]) -> str:
        return _clean(self.text[match.start() : match.end()])

    def run(self) -> None:
        # before budgets and bounds: "choose at most 3 of Cu, ..." is neither a bound nor a budget
        for pattern in _CARDINALITY_PATTERNS:
            self.scan(pattern, self._cardinality)
        for pattern in _BATCH_PATTERNS:
            self.scan(pattern, self._batch)
        for pattern in _INITIAL_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.read.initials))
        for pattern in _BUDGET_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.read.budgets))
        self.scan(_SEED, lambda m: self._count(m, self.read.seeds))
        for pattern in _RESOLUTION_PATTERNS:
            self.scan(pattern, self._resolution)
        for pattern in _CATEGORY_PATTERNS:
            self.scan(pattern, self._category)
        for pattern in _SUM_PATTERNS:
            self.scan(pattern, self._sum_rule)
        for pattern in _TARGET_PATTERNS:
            self.scan(pattern, self._target)
        self.scan(_OBJECTIVE, self._objective)
        found = -1
        while len(self.read.objectives) > found:  # "maximise A, B and C": each "and" may add one
            found = len(self.read.objectives)
            self.scan(_OBJECTIVE_MORE, self._objective_more)
        self.scan(_QUANTITY_BOUND, self._quantity_bound)
        self.scan(_PLUS_CONSTRAINT, self._plus_constraint)
        self.scan(_SUM_OF_CONSTRAINT, self._sum_of_constraint)
        # the component list before group bounds: in "of A, B and C, A and B each ..." it ends at C
        self.scan(_LIST, self._list)
        self.scan(_GROUP_BOUND, self._group_bound)
        for pattern in _RANGE_PATTERNS:
            self.scan(pattern, self._range)
        self.scan(_BOUND, self._bound)
        self.scan(_BOUND_REVERSED, self._bound)
        self.scan(_SYSTEM, self._system)

    # -- handlers -------------------------------------------------------------------------------------
    def _batch(self, m: re.Match[str]) -> bool:
        n = _to_int(m.group("n")) if m.groupdict().get("n") else 1
        self.read.batches.append((n, self.phrase(m)))
        return True

    def _count(self, m: re.Match[str], sink: list[tuple[int, str]]) -> bool:
        sink.append((_to_int(m.group("n")), self.phrase(m)))
        return True

    def _cardinality(self, m: re.Match[str]) -> bool:
        self.read.cardinalities.append((_to_int(m.group("n")), self.phrase(m)))
        if m.groupdict().get("list"):
            self.read.lists.append((_names_of(m.group("list")), self.phrase(m)))
        return True

    def _resolution(self, m: re.Match[str]) -> bool:
        self.read.resolutions.append((self._amount(m, "v", "pct"), self.phrase(m)))
        return True

    def _category(self, m: re.Match[str]) -> bool:
        choices = [c for c in _SPLIT_CHOICES.split(m.group("choices").strip()) if c]
        self.read.categories.append((m.start(), m.group("var"), choices, self.phrase(m)))
        return True

    def _sum_rule(self, m: re.Match[str]) -> bool:
        text = m.group(0).lower()
        groups = m.groupdict()
        pct = _pct_kind(groups.get("pct"))
        if groups.get("total"):
            total: float | None = _to_number(groups["total"])
        elif "independent" in text or "no sum rule" in text or "need not" in text:
            total = None
        elif "fraction" in text:
            total = 1.0
        else:
            total = 100.0
            pct = pct or "%"
        self.read.sum_rules.append(_SumRule(total=total, pct=pct, phrase=self.phrase(m)))
        return True

    def _target(self, m: re.Match[str]) -> bool:
        groups = m.groupdict()
        relation = (groups.get("rel") or "").lower()
        direction = None
        if relation and re.fullmatch(_UP_RELATIONS, relation, re.I):
            direction = "maximise"
        elif relation and re.fullmatch(_DOWN_RELATIONS, relation, re.I):
            direction = "minimise"
        self.read.targets.append(
            _Target(
                value=float(groups["v"]),
                unit=_unit(groups.get("u")),
                prop=groups.get("prop"),
                direction=direction,
                phrase=self.phrase(m),
            )
        )
        return True

    def _objective(self, m: re.Match[str]) -> bool:
        verb = m.group("verb").lower()
        up = re.match(_UP_VERBS, verb, re.I) or re.search(rf"(?:{_SUPERLATIVE_UP})$", verb, re.I)
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        objective = _Objective(
            name=_property_name(words),
            words=words,
            direction="maximise" if up else "minimise",
            unit=_unit(m.group("u1") or m.group("u2")),
            phrase=self.phrase(m),
        )
        self.read.objectives.append(objective)
        self._objective_ends[m.end()] = objective
        return True

    def _objective_more(self, m: re.Match[str]) -> bool:
        before = self._objective_ends.get(m.start())
        prop = m.group("prop")
        # right after an objective; without "the" a capitalised word is more likely a component name
        if before is None or not (m.group("the") or prop[0].islower()):
            return False
        words = re.sub(r"\s+", " ", prop).lower()
        objective = _Objective(
            name=_property_name(words),
            words=words,
            direction=before.direction,
            unit=_unit(m.group("u1") or m.group("u2")),
            phrase=re.sub(r"^(?:and|&)\s+", "", self.phrase(m).lstrip(", "), flags=re.I),
        )
        self.read.objectives.append(objective)
        self._objective_ends[m.end()] = objective
        return True

    def _quantity_bound(self, m: re.Match[str]) -> bool:
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        name = _property_name(words)
        if name not in _QUANTITIES and all(o.name != name for o in self.read.objectives):
            return False  # "P3HT at least 0.3" bounds a component
        operator = "<=" if _UP_RE.fullmatch(m.group("cmp").strip()) else ">="
        self.read.quantity_bounds.append(
            _QuantityBound(name, words, operator, float(m.group("v")), _unit(m.group("u")), self.phrase(m))
        )
        return True

    def _amount(self, m: re.Match[str], number: str, pct: str) -> _Amount:
        return _Amount(float(m.group(number)), _pct_kind(m.groupdict().get(pct)))

    def _plus_constraint(self, m: re.Match[str]) -> bool:
        coefficients: dict[str, float] = {}
        for term in re.split(r"\s*\+\s*", m.group("lhs").strip()):
            coef = re.match(rf"({_NUM})\s*\*?\s*(.+)$", term, re.I)
            name, value = (coef.group(2), float(coef.group(1))) if coef else (term, 1.0)
            name = name.strip()
            coefficients[name] = coefficients.get(name, 0.0) + value
        self._add_constraint(m, coefficients)
        return True

    def _sum_of_constraint(self, m: re.Match[str]) -> bool:
        self._add_constraint(m, dict.fromkeys(_names_of(m.group("names")), 1.0))
        return True

    def _add_constraint(self, m: re.Match[str], coefficients: dict[str, float]) -> None:
        operator = "<=" if _UP_RE.fullmatch(m.group("cmp").strip()) else ">="
        self.read.constraints.append(
            _Constraint(coefficients, operator, self._amount(m, "v", "pct"), self.phrase(m))
        )

    def _group_bound(self, m: re.Match[str]) -> bool:
        mode = " ".join((m.group("mode") or m.group("mode2") or "").split()).lower()
        names = _names_of(m.group("names"))
        if mode in ("together", "combined", "jointly", "in total"):
            self._add_constraint(m, dict.fromkeys(names, 1.0))
        elif mode:
            for name in names:
                self._add_bound(name, m.group("cmp"), self._amount(m, "v", "pct"), self.phrase(m))
        else:
            phrase = self.phrase(m)
            self.problems.append(
                f'"{phrase}" is ambiguous: write "{names[0]} and {names[1]} each ..." to bound each one,'
                f' or "{names[0]} and {names[1]} together ..." to bound their sum'
            )
        return True

    def _add_bound(self, name: str, cmp: str, amount: _Amount, phrase: str) -> None:
        upper = bool(_UP_RE.fullmatch(cmp.strip()))
        self.read.bounds.append(_Bound(name, None if upper else amount, amount if upper else None, phrase))

    def _subject(self, m: re.Match[str]) -> str:
        name = m.group("name")
        return "*" if re.fullmatch(_EACH, name, re.I) else name

    def _range(self, m: re.Match[str]) -> bool:
        low, high = self._amount(m, "a", "pa"), self._amount(m, "b", "pb")
        if low.pct is None:
            low.pct = high.pct  # "between 0 and 30 %": the marker applies to both numbers
        self.read.bounds.append(_Bound(self._subject(m), low, high, self.phrase(m)))
        return True

    def _bound(self, m: re.Match[str]) -> bool:
        self._add_bound(self._subject(m), m.group("cmp"), self._amount(m, "v", "pct"), self.phrase(m))
        return True

    def _system(self, m: re.Match[str]) -> bool:
        raw = m.group("names")
        if not m.group("noun") and ("-" in raw or not m.group("prefix").strip() or _UNIT_RE.fullmatch(raw)):
            return False  # "Cu-Ag" alone may be one hyphenated name, "mg/mL" a unit; a noun settles it
        names = re.split(r"\s*[-/]\s*", raw)
        label = re.sub(r"\s*([-/])\s*", r"\1", raw)
        if m.group("noun"):
            label += " " + " ".join(m.group("noun").lower().split())
        modifiers = [n for n in names if _is_modifier(n)]
        if modifiers:  # "a Fe-based alloy" says what the alloy is like, not what is in it
            self.read.descriptions.append((label, modifiers[0]))
        else:
            self.read.systems.append((names, label))
        return True

    def _list(self, m: re.Match[str]) -> bool:
        names = _names_of(m.group("list"))
        if len(names) < 2:
            return False
        self.read.lists.append((names, self.phrase(m)))
        return True

    # -- leftovers --------------------------------------------------------------------------------------
    def unread(self) -> list[str]:
        """Quoted stretches of the request that no rule used and that are not filler."""
        fragments = []
        for segment in re.finditer(rf"[^{_USED}]+", self.work):
            bad = [w for w in _WORD.finditer(segment.group(0)) if w.group(0).lower() not in _FILLER]
            if bad:
                start = segment.start() + bad[0].start()
                end = segment.start() + bad[-1].end()
                while start > 0 and self.work[start - 1] in "+-":
                    start -= 1
                fragments.append(self.text[start:end].strip())
        return fragments


# ---------------------------------------------------------------------------------------------------
# From what was read to spec fields
# ---------------------------------------------------------------------------------------------------


def _single(items: list[tuple[int, str]], what: str, problems: list[str]) -> int | None:
    values = {v for v, _ in items}
    if len(values) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in items)
        problems.append(f"{what} is given more than once ({quoted}); give it once")
        return None
    return items[0][0] if items else None


def _resolve_objectives(read: _Read, parser: _Parser) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The objectives (with targets and thresholds) and the outcome constraints; empty on a problem."""
    problems = parser.problems
    objectives: list[_Objective] = []
    for o in read.objectives:
        if not any(o.name == k.name and o.direction == k.direction for k in objectives):
            objectives.append(o)
    leftover_verbs = {"maximise" if v.group("up") else "minimise" for v in _VERB_WORDS.finditer(parser.work)}
    if not objectives:
        problems.append(
            'no objective: say what to optimise, e.g. "Maximise the conductivity" or "Minimise the band gap"'
        )
        return [], []
    names = list(dict.fromkeys(o.name for o in objectives))
    clash = [n for n in names if len({o.direction for o in objectives if o.name == n}) > 1]
    stray = leftover_verbs and (len(names) > 1 or leftover_verbs != {objectives[0].direction})
    if clash or stray:
        phrases = " and ".join(f'"{o.phrase}"' for o in objectives)
        what = f"{clash[0].replace('_', ' ')}" if clash else "its objective"
        problems.append(
            f"conflicting directions ({phrases}{' and another verb' if leftover_verbs else ''}): a campaign"
            f" either maximises or minimises {what}; ask for one"
        )
        return [], []
    targets = _targets_by_objective(read, objectives, problems)
    out: dict[str, dict[str, Any]] = {}
    for objective in objectives:
        unit = objective.unit
        target: float | None = None
        mine = targets.get(objective.name, [])
        if len(mine) > 1:
            problems.append("more than one target (" + " and ".join(f'"{t.phrase}"' for t in mine) + ")")
        elif mine:
            t = mine[0]
            target = t.value
            if t.direction and t.direction != objective.direction:
                problems.append(
                    f'the target "{t.phrase}" points the other way from "{objective.phrase}"; use "reaches"'
                )
            if t.unit and unit and t.unit.replace(" ", "") != unit.replace(" ", ""):
                problems.append(f"the target is in {t.unit} but the objective is in {unit}; use one unit")
            unit = unit or t.unit
        out[objective.name] = {"name": objective.name, "direction": objective.direction, "unit": unit}
        out[objective.name]["target"] = target
    outcomes = _resolve_quantity_bounds(read, objectives, out, problems)
    for entry in out.values():
        if entry["unit"] is None:
            entry["unit"] = PROPERTY_UNITS.get(entry["name"], "")
    return list(out.values()), outcomes


def _targets_by_objective(
    read: _Read, objectives: list[_Objective], problems: list[str]
) -> dict[str, list[_Target]]:
    """Each target under the objective it is for: the one it names, or the only one."""
    names = {o.name for o in objectives}
    out: dict[str, list[_Target]] = {}
    for t in read.targets:
        if len(names) == 1:
            objective = objectives[0]
            if t.prop and _property_name(t.prop) != objective.name:
                problems.append(
                    f'the target "{t.phrase}" names {t.prop!r} but the objective is {objective.words!r};'
                    ' name the same property, or say "until it reaches ..."'
                )
            out.setdefault(objective.name, []).append(t)
        elif t.prop and _property_name(t.prop) in names:
            out.setdefault(_property_name(t.prop), []).append(t)
        else:
            listed = ", ".join(o.words for o in objectives)
            problems.append(
                f'the target "{t.phrase}" does not name one of the objectives ({listed}); name it, e.g.'
                f' "target {objectives[0].words} of ..." or "until {objectives[0].words} reaches ..."'
            )
    return out


def _resolve_quantity_bounds(
    read: _Read, objectives: list[_Objective], out: dict[str, dict[str, Any]], problems: list[str]
) -> list[dict[str, Any]]:
    """Bounds on measured quantities: thresholds of objectives (into ``out``) and outcome constraints.

    With one objective there is no trade-off to bound, so a bound on it is an outcome constraint too.
    """
    by_name = {o.name: o for o in objectives}
    outcomes: list[dict[str, Any]] = []
    seen: dict[str, _QuantityBound] = {}
    for bound in read.quantity_bounds:
        objective = by_name.get(bound.name)
        entry = out.get(bound.name)
        if entry is not None and bound.unit and entry["unit"]:
            if bound.unit.replace(" ", "") != entry["unit"].replace(" ", ""):
                problems.append(
                    f'"{bound.phrase}" is in {bound.unit} but {bound.words} is in {entry["unit"]};'
                    " use one unit"
                )
                continue
        if objective is None or len(objectives) == 1:
            unit = bound.unit or (entry["unit"] if entry else None) or PROPERTY_UNITS.get(bound.name, "")
            outcomes.append(
                {"name": bound.name, "operator": bound.operator, "value": bound.value, "unit": unit}
            )
            continue
        worst_side = ">=" if objective.direction == "maximise" else "<="
        if bound.operator != worst_side:
            side = "at least" if worst_side == ">=" else "at most"
            problems.append(
                f'"{bound.phrase}" bounds {bound.words} in the direction it is {objective.direction}d in; a'
                f' threshold is the worst acceptable value ("{bound.words} {side} ..."), and a value to stop'
                " at is a target"
            )
            continue
        if bound.name in seen and seen[bound.name].value != bound.value:
            problems.append(
                f'the threshold of {bound.words} is given twice ("{seen[bound.name].phrase}" and'
                f' "{bound.phrase}"); give it once'
            )
            continue
        seen[bound.name] = bound
        out[bound.name]["threshold"] = bound.value
        out[bound.name]["unit"] = out[bound.name]["unit"] or bound.unit
    return outcomes


def _resolve_components(read: _Read, problems: list[str]) -> tuple[list[str], str]:
    """Component names and a label of the system for the title."""
    labels = [label for _, label in read.systems] or [label for label, _ in read.descriptions]
    label = labels[0] if len(labels) == 1 else ""
    # "of Cu, Ag and Zr, choose at most 2 of Cu, Ag and Zr" lists the same components twice: one list
    distinct = list(dict.fromkeys(tuple(names) for names, _ in read.lists))
    if len(distinct) == 1:
        read.lists = read.lists[:1]
    if len(read.lists) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in read.lists)
        problems.append(f"components are listed more than once ({quoted}); list them once")
        return [], label
    if read.lists:
        names = read.lists[0][0]
    elif len(read.systems) == 1:
        names = read.systems[0][0]
    elif read.systems:
        problems.append(
            "more than one system is named (" + ", ".join(s for _, s in read.systems) + "); name one"
        )
        return [], label
    elif read.descriptions:
        for described, word in read.descriptions:
            problems.append(
                f'no components: "{described}" does not say what is in it ("{word}" is not a component);'
                f' list the components, e.g. "a {described} of A, B and C"'
            )
        return [], label
    else:
        problems.append(
            'no components: name at least two, e.g. "of a blend of P3HT, D1 and D2", "of a Cu-Ag-Zr alloy"'
            ' or "components A, B and C"'
        )
        return [], label
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"component(s) {', '.join(dupes)} listed more than once; name each once")
    if not label:
        label = ", ".join(names[:-1]) + f" and {names[-1]}"
    return list(dict.fromkeys(names)), label


def _check_names(used: list[tuple[str, str]], names: list[str], problems: list[str]) -> bool:
    ok = True
    for name, phrase in used:
        if name == "*" or name in names:
            continue
        ok = False
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        close = close or [n for n in names if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(
            f'"{phrase}" bounds {name}, which is not a component{hint}; the components are {", ".join(names)}'
        )
    return ok


def _resolve_unit(read: _Read, amounts: list[_Amount], problems: list[str]) -> tuple[float | None, str]:
    """The sum-rule total (None: no sum rule) and the composition unit."""
    rules = {(r.total, r.pct) for r in read.sum_rules}
    kinds = {a.pct for a in amounts if a.pct} | {r.pct for r in read.sum_rules if r.pct}
    specific = kinds - {"%"}
    if len(specific) > 1:
        problems.append(
            f"amounts mix {' and '.join(sorted(specific))}, which cannot be converted into each other;"
            " give every amount in one kind of percent"
        )
    if len({r.total for r in read.sum_rules}) > 1:
        quoted = " and ".join(f'"{r.phrase}"' for r in read.sum_rules)
        problems.append(f"the sum rule is given more than once and differs ({quoted}); give it once")
        return 1.0, "fraction"
    if rules:
        rule = read.sum_rules[0]
        if rule.total is None:
            unit = "percent" if any(a.pct for a in amounts) else "fraction"
            return None, unit
        if rule.total not in (1.0, 100.0) or (rule.pct and rule.total != 100.0):
            problems.append(f'"{rule.phrase}": amounts must sum to 1 (fractions) or to 100 % (percent)')
            return 1.0, "fraction"
        return rule.total, "fraction" if rule.total == 1.0 else "percent"
    if any(a.pct for a in amounts):
        if any(a.pct is None for a in amounts):
            problems.append(
                "some amounts are in percent and some have no unit; give every amount in percent, or"
                ' state the sum rule ("fractions sum to 1" or "summing to 100 %")'
            )
        return 100.0, "percent"
    return 1.0, "fraction"


#: What a percent marker says the fractions are fractions of (``CampaignSpec.basis``).
_BASIS_OF_MARKER = {"at.%": "mole", "mol.%": "mole", "wt.%": "mass", "vol.%": "volume"}


def _basis_of(amounts: list[_Amount], read: _Read) -> str | None:
    """The composition basis the amounts' markers name ("10 at.%": mole), or None when unstated.

    Mixed markers are refused by :func:`_resolve_unit`, so at most one kind is left here.
    """
    markers = {a.pct for a in amounts if a.pct} | {r.pct for r in read.sum_rules if r.pct}
    bases = {_BASIS_OF_MARKER[m] for m in markers if m in _BASIS_OF_MARKER}
    return bases.pop() if len(bases) == 1 else None


def _in_unit(amount: _Amount, unit: str) -> float:
    if amount.pct and unit == "fraction":
        return amount.value / 100.0
    return amount.value


def _assemble(parser: _Parser) -> dict[str, Any]:
    read, problems = parser.read, parser.problems
    objectives, outcomes = _resolve_objectives(read, parser)
    names, label = _resolve_components(read, problems)

    amounts = [a for b in read.bounds for a in (b.lower, b.upper) if a] + [c.rhs for c in read.constraints]
    amounts += [a for a, _ in read.resolutions]
    total, unit = _resolve_unit(read, amounts, problems)
    scale = 1.0 if unit == "fraction" else 100.0
    basis = _basis_of(amounts, read)

    components: list[dict[str, Any]] = []
    if names:
        used = [(b.name, b.phrase) for b in read.bounds]
        used += [(n, c.phrase) for c in read.constraints for n in c.coefficients]
        _check_names(used, names, problems)
        bounds: dict[str, dict[str, float]] = {n: {"lower": 0.0, "upper": scale} for n in names}
        seen: dict[tuple[str, str], tuple[float, str]] = {}
        # "each component ..." first, so that a bound on one component overrides it
        for b in sorted(read.bounds, key=lambda b: b.name != "*"):
            targets = names if b.name == "*" else [b.name] if b.name in bounds else []
            for side, amount in (("lower", b.lower), ("upper", b.upper)):
                if amount is None:
                    continue
                value = _in_unit(amount, unit)
                key = (b.name, side)
                if key in seen and seen[key][0] != value:
                    problems.append(
                        f'the {side} bound of {b.name} is given twice ("{seen[key][1]}" and "{b.phrase}");'
                        " give it once"
                    )
                seen[key] = (value, b.phrase)
                for name in targets:
                    bounds[name][side] = value
        for name in names:
            entry: dict[str, Any] = {"name": name, **bounds[name]}
            if total is None:
                entry["unit"] = unit
            components.append(entry)

    constraints = [
        {"coefficients": c.coefficients, "operator": c.operator, "rhs": _in_unit(c.rhs, unit)}
        for c in read.constraints
    ]
    experiments = _single(read.budgets, "the budget", problems)
    if experiments is None and not read.budgets:
        problems.append(
            'no budget: say how many experiments to run, e.g. "30 experiments" or "a budget of 20 runs"'
        )
    batch = _single(read.batches, "the batch size", problems)
    initial = _single(read.initials, "the initial design", problems)
    seed = _single(read.seeds, "the seed", problems)
    most_present = _single(read.cardinalities, "how many components may be present", problems)
    steps = {_in_unit(a, unit) for a, _ in read.resolutions}
    if len(steps) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in read.resolutions)
        problems.append(f"the grid step is given more than once ({quoted}); give it once")
    categories = _resolve_categories(read, problems)

    if problems:
        return {}
    assert objectives and experiments is not None
    words = {o.name: o.words for o in reversed(read.objectives)}  # the first words of each
    directions = {o["direction"] for o in objectives}
    if len(directions) == 1:
        title = f"{directions.pop()} {_and_list([words[o['name']] for o in objectives])} of {label}"
    else:
        title = _and_list([f"{o['direction']} {words[o['name']]}" for o in objectives]) + f" of {label}"
    data: dict[str, Any] = {
        "title": title if len(title) <= 80 else title[:77] + "...",
        "request": parser.text,
        "components": components,
        "sum_rule": None if total is None else {"total": total},
        "constraints": constraints,
        "objectives": objectives,
        "budget": {"experiments": experiments, "batch_size": 1 if batch is None else batch},
    }
    if outcomes:
        data["outcome_constraints"] = outcomes
    if basis is not None:
        data["basis"] = basis
    if initial is not None:
        data["budget"]["initial_experiments"] = initial
    if seed is not None:
        data["seed"] = seed
    if most_present is not None:
        data["max_active_components"] = most_present
    if steps:
        data["resolution"] = steps.pop()
    if categories:
        data["categories"] = categories
    return data


def _and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _resolve_categories(read: _Read, problems: list[str]) -> list[dict[str, Any]]:
    """Categorical variables in the order the request names them, each named once."""
    out: list[dict[str, Any]] = []
    for _, name, choices, phrase in sorted(read.categories, key=lambda item: item[0]):
        if any(c["name"] == name for c in out):
            problems.append(
                f'the choices of {name} are given more than once (again in "{phrase}"); give them once'
            )
            continue
        out.append({"name": name, "choices": choices})
    return out


def _summary(read: _Read) -> str:
    parts = []
    for o in read.objectives:
        parts.append(f"{o.direction} {o.words}" + (f" in {o.unit}" if o.unit else ""))
    for t in read.targets:
        parts.append(f"target {_fmt(t.value)}" + (f" {t.unit}" if t.unit else ""))
    for q in read.quantity_bounds:
        parts.append(f"{q.words} {q.operator} {_fmt(q.value)}" + (f" {q.unit}" if q.unit else ""))
    for names, _ in read.lists:
        parts.append("components " + ", ".join(names))
    for names, label in read.systems:
        parts.append(label if read.lists else "components " + ", ".join(names))
    for label, _ in read.descriptions:
        parts.append(label)
    for r in read.sum_rules:
        parts.append(f'sum rule "{r.phrase}"')
    for b in read.bounds:
        parts.append(f'bound "{b.phrase}"')
    for c in read.constraints:
        parts.append(f'constraint "{c.phrase}"')
    for n, _ in read.budgets:
        parts.append(f"{n} experiments")
    for n, _ in read.batches:
        parts.append(f"batches of {n}")
    for n, _ in read.initials:
        parts.append(f"initial design of {n}")
    for n, _ in read.seeds:
        parts.append(f"seed {n}")
    for n, _ in read.cardinalities:
        parts.append(f"at most {n} components present")
    for amount, _ in read.resolutions:
        parts.append(f"grid step {_fmt(amount.value)}{' ' + amount.pct if amount.pct else ''}")
    for _, name, choices, _ in sorted(read.categories, key=lambda item: item[0]):
        parts.append(f"{name}: {', '.join(choices)}")
    return "; ".join(dict.fromkeys(parts)) if parts else "nothing"


def read_request(text: str) -> dict[str, Any]:
    """Read a controlled-English campaign request into the fields of a ``CampaignSpec``.

    Args:
        text: The request, e.g. ``"Maximise the conductivity of a blend of P3HT, D1 and D2,
            30 experiments in batches of 5"``.

    Returns:
        A dict for ``CampaignSpec.model_validate``: title, request, components (bounds in the spec's
        unit), sum_rule, constraints, objectives, budget and, when given, seed,
        max_active_components, resolution (in the spec's unit) and categories. Not yet validated:
        infeasible bounds are left for the spec's validators to report.

    Raises:
        athanor.errors.RequestNotUnderstood: A part of the request was not read, or something the
            spec needs (objective, two components, budget) is missing or contradictory. The message
            quotes the unread words, says what was read and shows a phrasing that works.
    """
    if not text or not text.strip():
        raise RequestNotUnderstood(_message(["the request is empty"], "nothing"))
    parser = _Parser(text)
    parser.run()
    unread = parser.unread()
    data = _assemble(parser)
    problems = [f'could not read "{u}"' for u in unread] + parser.problems
    if problems:
        raise RequestNotUnderstood(_message(problems, _summary(parser.read)))
    return data


#: Characters of one problem, or of what was read, that a refusal shows before cutting it.
_ECHO_CHARS = 200


def _shorten(text: str) -> str:
    """``text`` cut to its first :data:`_ECHO_CHARS` characters, with ``…`` and its full length."""
    if len(text) <= _ECHO_CHARS + 40:  # a few characters over are kept rather than cut
        return text
    return f"{text[:_ECHO_CHARS]}… ({len(text)} characters)"


def _message(problems: list[str], summary: str) -> str:
    # words of a long request are quoted in problems and in what was read: cut so the refusal stays readable
    lines = ["The request could not be read:"]
    lines += [f"  - {_shorten(p)}" for p in problems]
    lines.append(f"Read so far: {_shorten(summary)}.")
    lines.append(f"A phrasing that works: {EXAMPLE_REQUEST}")
    lines.append(f"The grammar is described in {_DOCS}.")
    return "\n".join(lines)
