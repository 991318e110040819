"""The phrase patterns of the request reader: one regular expression (or a few) per kind of phrase.

Every pattern is compiled case-insensitive; component names keep their case. The patterns run on the
working text of :mod:`agents.llm.reader.text`, in the order :class:`agents.llm.reader.scanner.Scanner`
gives, and each match marks the characters it used.
"""

from __future__ import annotations

import re

from agents.llm.reader.words import WORD_INT

__all__ = [
    "AS_MUCH_AS_POSSIBLE",
    "AS_POSSIBLE_OBJECTIVE",
    "BALANCE_PATTERNS",
    "BASIS",
    "BATCH_PATTERNS",
    "BETTER_VERBS",
    "BOUND",
    "BOUND_REVERSED",
    "BUDGET_PATTERNS",
    "CARDINALITY_PATTERNS",
    "CATEGORY_PATTERNS",
    "DESIGNATION",
    "DOPED",
    "DOWN_RELATIONS",
    "EACH",
    "FIND_OBJECTIVE",
    "GROUP_BOUND",
    "INITIAL_PATTERNS",
    "LIST",
    "MAKE_OBJECTIVE",
    "NUM",
    "OBJECTIVE",
    "OBJECTIVE_MORE",
    "OBJECTIVE_PATTERNS",
    "OF_OBJECTIVE",
    "PLUS_CONSTRAINT",
    "QUANTITY_BOUND",
    "QUESTION_OBJECTIVE",
    "RANGE_PATTERNS",
    "RESOLUTION_PATTERNS",
    "SEED",
    "SPLIT_CHOICES",
    "SPLIT_LIST",
    "SUM_OF_CONSTRAINT",
    "SUM_PATTERNS",
    "SUPERLATIVE_OBJECTIVE",
    "SYSTEM",
    "TARGET_PATTERNS",
    "UNIT_RE",
    "UNKNOWN_PROPERTY",
    "UP_RE",
    "UP_RELATIONS",
    "UP_VERBS",
    "VERB_WORDS",
    "WHICH_OBJECTIVE",
    "WORD",
]

_INT = rf"(?:(?<![\w.+-])\d+(?![\d.]*\d)(?![\w])|(?<![\w-]){WORD_INT})"
NUM = r"(?<![\w.+-])(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?![\w])"
_SIGNED = r"(?<![\w.+-])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?![\w])"  # targets may be negative
_ONE_OR_HUNDRED = rf"(?:{NUM}|one|(?:a\s+|one\s+)?hundred)"


def pct(group: str, optional: bool = True) -> str:
    """A percent marker after a number (``10 at.%``), captured as ``group``."""
    return (
        rf"(?P<{group}>\s*(?:(?:at|wt|mol|vol|mass|atomic|weight|molar|volume)\.?\s*(?:%|percent)"
        rf"|%|percent|per\s*cent|pct)(?:\s+by\s+(?:mass|weight|volume|moles?|atoms?))?(?![\w]))"
        rf"{'?' if optional else ''}"
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
_NAME = rf"(?<![\w:.-]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?:[-:][A-Za-z0-9_]+)*(?![\w])(?!\.\d)"
#: A component name inside a hyphen/slash-joined system name such as Cu-Ag-Zr.
_PART = rf"(?<![\w:.]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)*(?![\w])"
_AND = r"(?:and|&)"
_NAME_LIST = rf"{_NAME}(?:\s*,\s*{_NAME})*\s*,?\s*{_AND}\s+{_NAME}"
_OPEN_LIST = rf"{_NAME}(?:\s*,\s*{_NAME})*(?:\s*,?\s*{_AND}\s+{_NAME})?"
_MEMBER = r"(?:component|ingredient|element|constituent|metal|species)"
EACH = rf"(?:(?:each|every|any)\s+{_MEMBER}|all\s+{_MEMBER}s|each(?:\s+one)?)"
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
UP_RE = re.compile(rf"(?:{'|'.join(map(re.escape, _UP_SYMBOLS))}|{'|'.join(_UP_WORDS)})", re.I)

# Units are case-sensitive; a slash unit is built from known unit symbols so that "P3HT/CNT" is not one.
_UNIT_ATOM = (
    r"(?:[pnµumkMG]?(?:S|W|V|A|g|J|eV|Ohm|Ω|Pa|N|C|F|K|m|mol|L|Wh|Ah|s|h|cd)|cm|mm|nm|sq)(?:\^?-?\d)?"
)
_UNIT = (
    rf"(?-i:(?:{_UNIT_ATOM}(?:[·*]{_UNIT_ATOM})*(?:/\(?{_UNIT_ATOM}(?:[·*\s]{_UNIT_ATOM})*\)?)+"
    r"|eV|meV|HV|GPa|MPa|kPa|°C|nm|µm|ppm|mV|mA|dB|a\.u\.|Ohm\s+cm|Ω\s*cm|Ohm|Ω|%|percent|K)(?![\w/]))"
)

UP_VERBS = r"maximi[sz]e|increase|raise|boost|enhance"
_DOWN_VERBS = r"minimi[sz]e|reduce|decrease|lower"
#: Verbs that say "make it better": the property's sense gives the direction, as with "the best".
BETTER_VERBS = r"optimi[sz]e|improve"
#: Superlatives that stand for a direction on their own ("the highest yield", "for maximum strength").
_SUPERLATIVE = (
    r"(?:highest|largest|greatest|biggest|fastest|lowest|smallest|slowest|best|most|least"
    r"|maximum|minimum|max|min|maximal|minimal)"
)
#: Nouns a request may use for what it looks for: "the composition with the highest ...".
_SOUGHT = (
    r"(?:compositions?|blends?|mixtures?|mix|alloys?|formulations?|recipes?|samples?|ratios?|proportions?"
    r"|combinations?|materials?|catalysts?|films?)"
)
_PROP_STOP = (
    r"of|for|in|until|target|with|by|at|on|using|while|from|across|over|within|and|or|to|when|once|as"
    r"|subject|where|given|keeping|seed|budget|through|via|among|between|per|the|a|an|is|varying|mixing"
    r"|please|experiments?|runs?|samples?|batch(?:es)?|then|so|stop|whilst|bounds?|limits?|it|its|them"
    r"|find|make|get|gives?|has|have|having|giving|shows?|yields|produces|that|which|what|possible|we|i"
    r"|highest|lowest|largest|smallest|greatest|best|most|least|fastest|slowest|maximum|minimum|tuning"
    r"|tune|mix|doped|each|every|all|both|together|compositions?|blends?|mixtures?|formulations?|recipes?"
    r"|ratios?"
)
_PROP_WORD = rf"(?!(?:{_PROP_STOP})(?![\w-]))[A-Za-z]+(?:-[A-Za-z]+)*(?![\w])"
_PROP = rf"{_PROP_WORD}(?:\s+{_PROP_WORD}){{0,3}}"
_OBJECTIVE_UNIT = rf"(?:\s*\(\s*(?P<u1>{_UNIT})\s*\)|\s+(?:in|measured\s+in)\s+(?P<u2>{_UNIT}))?"
#: A system named in one word: joined by '-' or '/' (Cu-Ag-Zr, P3HT/CNT) or an element string (CoCrFeMnNi).
_SYSTEM_WORDS = (
    rf"(?:{_PART}(?:\s*[-/]\s*{_PART})+|(?-i:[A-Z][a-z]?(?:[A-Z][a-z]?)+)(?![\w])"
    r"|(?-i:[A-Z][A-Za-z0-9]*(?::[A-Z][A-Za-z0-9]*)+)(?![\w:]))"
)
_GIVING = (
    r"with|that\s+(?:gives|has|shows|yields|reaches|achieves)|giving|having|showing|yielding|gives|has|shows"
    r"|yields|produces|leads\s+to|results\s+in|achieves|reaches"
)

WORD = re.compile(r"[^\s\x00,;:.!?()\[\]{}\"'“”‘’/\-–—]+")



def rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- budget, batch size, initial design, seed -------------------------------------------------------
BATCH_PATTERNS = [
    rx(rf"(?<!\w)(?:(?:in|with)\s+)?(?:batch(?:es)?|rounds?)\s+of\s+(?P<n>{_INT})(?:\s+(?:{_NOUN}|each))?"),
    rx(rf"(?<!\w)(?:(?:a|the|with)\s+)?batch[\s-]*size\s*(?:of|is|:|=)?\s*(?P<n>{_INT})"),
    rx(
        rf"(?P<n>{_INT})\s+(?:{_NOUN}\s+)?(?:at\s+a\s+time|at\s+once|in\s+parallel"
        r"|(?:per|in\s+each|each)\s+(?:batch|round|iteration|cycle))(?![\w])"
    ),
    rx(r"(?<!\w)(?:one\s+by\s+one|one\s+after\s+(?:the\s+)?(?:other|another)|sequentially)(?![\w])"),
]
INITIAL_PATTERNS = [
    rx(
        rf"(?<!\w)(?:(?:starting|start|beginning|begin)\s+with\s+)?(?:(?:an?|the)\s+)?"
        rf"(?:initial|random|space-filling)\s+design\s+of\s+(?P<n>{_INT})(?:\s+{_NOUN})?"
    ),
    rx(
        rf"(?<!\w)(?:(?:starting|start|beginning|begin)\s+with\s+)?(?P<n>{_INT})\s+"
        rf"(?:initial|random|space-filling)\s+{_NOUN}(?![\w])"
    ),
]
BUDGET_PATTERNS = [
    rx(
        rf"(?<!\w)(?:(?:a|an|the)\s+)?(?:(?:total\s+)?budget\s+(?:of\s+|is\s+)?|(?:total\s+)?budget\s*[:=]\s*"
        rf"|(?:at\s+most|up\s+to|no\s+more\s+than|a\s+maximum\s+of|max(?:imum)?(?:\s+of)?)\s+)?"
        rf"(?P<n>{_INT})\s+{_NOUN}(?![\w])(?:\s+(?:in\s+total|total|overall|altogether|max(?:imum)?)(?![\w]))?"
    ),
    rx(rf"(?<!\w)(?:(?:a|an|the)\s+)?(?:total\s+)?budget\s*(?:of|is|:|=)?\s*(?P<n>{_INT})"),
]
SEED = rx(
    r"(?<!\w)(?:(?:with|using)\s+)?(?:(?:a|the)\s+)?(?:random\s+)?seed\s*(?:of|is|=|:)?\s*"
    r"(?P<n>(?<![\w.])\d+(?![\d.]*\d)(?![\w]))"
)

# --- sum rule -----------------------------------------------------------------------------------------
_SUM_SUBJECT = (
    r"(?:(?:the\s+)?(?:(?:mole|molar|mass|weight|volume|atomic)\s+)?"
    r"(?:fractions?|amounts?|proportions?|percentages?|compositions?|components?|concentrations?|shares?)"
    r"\s+(?:must\s+|should\s+|will\s+|that\s+|which\s+)?)"
)
SUM_PATTERNS = [
    rx(
        rf"(?<!\w){_SUM_SUBJECT}?(?:sum(?:s|ming)?(?:\s+up)?\s+to|add(?:s|ing)?\s+up\s+to"
        rf"|total(?:s|ling|ing)?(?:\s+to)?)\s+(?P<total>{_ONE_OR_HUNDRED}){pct('pct')}"
    ),
    rx(
        r"(?<!\w)(?:(?:amounts?|compositions?|concentrations?|proportions?)\s+(?:are\s+|given\s+)?)?"
        r"(?:as|in)\s+(?:(?:mole|molar|mass|weight|volume)\s+)?fractions(?:\s+of\s+(?:one|1))?(?![\w])"
    ),
    rx(
        r"(?<!\w)(?:amounts?|compositions?|concentrations?|proportions?)\s+(?:are\s+|given\s+)?(?:in|as)"
        rf"{pct('pct', optional=False)}(?:ages?)?"
    ),
    rx(
        r"(?<!\w)(?:no\s+sum\s+rule|independent\s+amounts|(?:the\s+)?(?:amounts?|components?)\s+(?:are\s+)?"
        r"independent|(?:the\s+)?(?:amounts?|fractions)\s+need\s+not\s+sum\s+to\s+(?:one|1|100\s*%?))(?![\w])"
    ),
]

# --- objective and target -------------------------------------------------------------------------------
OBJECTIVE = rx(
    rf"(?<!\w)(?P<verb>{UP_VERBS}|{_DOWN_VERBS}|{BETTER_VERBS})(?![\w])\s+(?:the\s+)?(?P<prop>{_PROP}){_OBJECTIVE_UNIT}"
)
#: "Find the (CoCrFeMnNi) composition with the highest yield strength", "find the lowest density".
FIND_OBJECTIVE = rx(
    rf"(?<!\w)(?P<find>find|identify|search\s+for|look\s+for|get|locate|discover)\s+(?:the\s+|an?\s+)?"
    rf"(?:(?P<system>{_SYSTEM_WORDS})\s+)?(?:(?P<sought>{_SOUGHT})\s+"
    rf"(?:of\s+(?:the\s+)?(?P<list>{_OPEN_LIST})\s+)?(?:{_GIVING})\s+(?:the\s+)?)?"
    rf"(?P<sup>{_SUPERLATIVE})\s+(?P<prop>{_PROP}){_OBJECTIVE_UNIT}"
)
#: "What ratio of Cu, Ag and Au gives the best selectivity", "which CoCrFeMnNi alloy has the lowest density".
QUESTION_OBJECTIVE = rx(
    rf"(?<!\w)(?:what|which)\s+(?:(?P<system>{_SYSTEM_WORDS})\s+)?(?P<sought>{_SOUGHT})\s+"
    rf"(?:of\s+(?:the\s+)?(?P<list>{_OPEN_LIST})\s+)?(?:{_GIVING})\s+(?:the\s+)?(?P<sup>{_SUPERLATIVE})\s+"
    rf"(?P<prop>{_PROP}){_OBJECTIVE_UNIT}"
)
#: "the highest transmittance", "for maximum efficiency", "with the lowest sheet resistance".
SUPERLATIVE_OBJECTIVE = rx(
    rf"(?<![\w-])(?P<for>(?:for|with|giving|having|of)\s+)?(?P<the>the\s+)?(?P<sup>{_SUPERLATIVE})\s+(?P<prop>{_PROP})"
    rf"{_OBJECTIVE_UNIT}"
)
#: "make the yield as high as possible", "as much hardness as possible".
AS_POSSIBLE_OBJECTIVE = [
    rx(
        rf"(?<!\w)(?:(?:make|get|keep|push|bring)\s+)?(?:the\s+)?(?P<prop>{_PROP})\s+as\s+"
        r"(?P<way>high|large|big|great|low|small|fast|slow)\s+as\s+possible(?![\w])"
    ),
    rx(rf"(?<!\w)(?:get\s+)?as\s+(?P<way>much|little)\s+(?P<prop>{_PROP})\s+as\s+possible(?![\w])"),
]
# Chinese word order, after the rewrites of agents.llm.reader.chinese: the property follows 的.
_OWNER = (
    rf"(?P<names>{_SYSTEM_WORDS}|{_OPEN_LIST})"
    rf"(?:\s+(?P<noun>{_SYSTEM_NOUN}|compositions?|high-entropy\s+alloys?)(?![\w]))?"
)
#: "maximise CoCrFeMnNi alloy 的 hardness" (最大化 CoCrFeMnNi 合金的硬度).
OF_OBJECTIVE = rx(
    rf"(?<!\w)(?P<verb>{UP_VERBS}|{_DOWN_VERBS})\s+(?:the\s+)?{_OWNER}\s*的\s*(?P<prop>{_PROP}){_OBJECTIVE_UNIT}"
)
#: "make Cu, Ag, Au 的 selectivity highest" (使 Cu、Ag、Au 的选择性最高), "... as high as possible".
MAKE_OBJECTIVE = rx(
    rf"(?<!\w)(?:make\s+)?{_OWNER}\s*的\s*(?P<prop>{_PROP})\s+(?:(?P<sup>{_SUPERLATIVE})"
    r"|as\s+(?P<way>high|large|low|small)\s+as\s+possible)(?![\w])"
)
#: "find conductivity highest 的 P3HT, CNT and PEDOT ratio" (找到电导率最高的 P3HT、CNT 和 PEDOT 配比).
WHICH_OBJECTIVE = rx(
    rf"(?:(?<!\w)find\s+|(?:^|(?<=[,;:.(]))\s*)(?:the\s+)?(?P<prop>{_PROP})\s+(?P<sup>{_SUPERLATIVE})\s*的\s*"
    rf"(?:{_OWNER}\s+)?(?P<sought>{_SOUGHT})(?![\w])"
)
#: "Ti-6Al-4V": an alloy designation, whose numbers the reader does not read as amounts.
DESIGNATION = rx(r"(?<![\w-])(?-i:(?P<base>[A-Z][a-z]?)(?P<rest>(?:-\d+(?:\.\d+)?[A-Z][a-z]?)+))(?![\w-])")
#: "maximise Cu, Ag and Zr 的 <a Chinese word no rewrite knows>": a property the reader does not know.
UNKNOWN_PROPERTY = rx(
    rf"(?<!\w)(?P<verb>{UP_VERBS}|{_DOWN_VERBS})\s+(?:the\s+)?{_OWNER}\s*的\s*(?P<unknown>[\u3400-\u9fff]+)"
)
#: Objective phrases that hold their direction in a verb, a question or a "find ..." (in this order).
OBJECTIVE_PATTERNS = [
    OF_OBJECTIVE,
    MAKE_OBJECTIVE,
    WHICH_OBJECTIVE,
    FIND_OBJECTIVE,
    QUESTION_OBJECTIVE,
    OBJECTIVE,
]
#: "... as much as possible" after an objective with a verb: no more than the verb says.
AS_MUCH_AS_POSSIBLE = rx(r"(?<!\w)as\s+(?:much|far)\s+as\s+possible(?![\w])")
UP_RELATIONS = (
    r"exceeds|passes|tops|rises\s+(?:above|over)|goes\s+(?:above|over)|gets\s+(?:above|over)"
    r"|is\s+(?:above|over|at\s+least|greater\s+than|higher\s+than|more\s+than)|>=|≥|>"
)
DOWN_RELATIONS = (
    r"drops\s+(?:below|under)|falls\s+(?:below|under)|goes\s+(?:below|under)|gets\s+(?:below|under)"
    r"|is\s+(?:below|under|at\s+most|less\s+than|lower\s+than)|<=|≤|<"
)
_NEUTRAL_RELATIONS = r"reaches|hits|gets\s+to|rises\s+to|drops\s+to|falls\s+to"
TARGET_PATTERNS = [
    rx(
        rf"(?<!\w)(?:(?:with|and)\s+)?(?:(?:a|an|the)\s+)?target(?:\s+value)?(?:\s+(?P<prop>{_PROP}))?"
        rf"(?:\s+(?:of|is|at)|\s*[:=])?\s*(?P<v>{_SIGNED})(?:\s*(?P<u>{_UNIT}))?"
    ),
    rx(
        rf"(?<!\w)(?:(?:and\s+)?stop\s+)?(?:until|once|when|as\s+soon\s+as)\s+(?:it|(?:the\s+)?(?P<prop>{_PROP}))"
        rf"\s+(?P<rel>{UP_RELATIONS}|{DOWN_RELATIONS}|{_NEUTRAL_RELATIONS})\s*(?P<v>{_SIGNED})"
        rf"(?:\s*(?P<u>{_UNIT}))?"
    ),
    rx(
        rf"(?<!\w)(?:(?:and\s+)?stop\s+)?(?:until|once|when)\s+(?:we|you)\s+(?:reach|hit|get\s+to)\s+"
        rf"(?P<v>{_SIGNED})(?:\s*(?P<u>{_UNIT}))?"
    ),
]

# --- more objectives after "and", thresholds and outcome constraints ---------------------------------
#: "..., (the) yield and (the) transmittance": another objective with the verb of the one it follows.
OBJECTIVE_MORE = rx(
    rf"(?:\s*,\s*(?:(?:and|&)\s+)?|\s+(?:and|&)\s+)(?P<the>the\s+)?(?P<prop>{_NOT_RESERVED}{_PROP})"
    rf"(?:\s*\(\s*(?P<u1>{_UNIT})\s*\)|\s+(?:in|measured\s+in)\s+(?P<u2>{_UNIT}))?"
)
_PROP_SHORTEST = rf"{_PROP_WORD}(?:\s+{_PROP_WORD}){{0,3}}?"
#: "conductivity at least 500 S/cm": a threshold of an objective, or an outcome constraint.
QUANTITY_BOUND = rx(
    rf"(?<!\w)(?:(?:the|a|an)\s+)?(?P<prop>{_PROP_SHORTEST})\s*{_COPULA}{_CMP}\s*(?P<v>{_SIGNED})"
    rf"(?:\s*(?P<u>{_UNIT}))?"
)
# --- constraints and bounds --------------------------------------------------------------------------------
_TERM = rf"(?:{NUM}\s*\*?\s*)?{_NAME}"
PLUS_CONSTRAINT = rx(
    rf"(?P<lhs>{_TERM}(?:\s*\+\s*{_TERM})+)\s*(?:(?:together|combined|in\s+total)\s+)?{_COPULA}"
    rf"{_CMP}\s*(?P<v>{NUM}){pct('pct')}"
)
SUM_OF_CONSTRAINT = rx(
    rf"(?<!\w)(?:the\s+)?(?:sum|total)\s+of\s+(?P<names>{_NAME_LIST})\s*{_COPULA}{_CMP}\s*(?P<v>{NUM})"
    rf"{pct('pct')}"
)
GROUP_BOUND = rx(
    rf"(?P<names>{_NAME_LIST})\s+(?P<mode>(?:each|both|all|together|combined|jointly|in\s+total)\s+)?"
    rf"{_COPULA}{_CMP}\s*(?P<v>{NUM}){pct('pct')}(?P<mode2>\s+(?:each|apiece|together|combined|in\s+total))?"
    r"(?![\w])"
)
_SUBJECT_PREFIX = (
    r"(?:(?:the\s+)?(?:fraction|amount|content|share|proportion|concentration|loading)\s+of\s+)?"
)
_SUBJECT_SUFFIX = (
    r"(?:\s+(?P<bw>(?:mass|mole|molar|weight|volume|atomic)\s+)?"
    r"(?:content|fractions?|amount|share|loading|concentration)|\s+by\s+(?P<by>mass|weight|volume|moles?))?"
)
_SUBJECT = rf"{_SUBJECT_PREFIX}(?P<name>{EACH}|{_NAME}){_SUBJECT_SUFFIX}"
_LE = r"(?:<=|=<|≤|<)"
RANGE_PATTERNS = [
    rx(rf"(?P<a>{NUM}){pct('pa')}\s*{_LE}\s*(?P<name>{_NAME})\s*{_LE}\s*(?P<b>{NUM}){pct('pb')}"),
    rx(
        rf"{_SUBJECT}\s*{_COPULA}(?:between|within)\s+(?P<a>{NUM}){pct('pa')}\s+(?:and|to)\s+(?P<b>{NUM})"
        rf"{pct('pb')}"
    ),
    rx(rf"{_SUBJECT}\s*{_COPULA}from\s+(?P<a>{NUM}){pct('pa')}\s+to\s+(?P<b>{NUM}){pct('pb')}"),
    # "Ag at least 0.1 and at most 0.3"
    rx(
        rf"{_SUBJECT}\s*{_COPULA}(?:at\s+least|no\s+less\s+than|not\s+less\s+than|>=|≥)\s*(?P<a>{NUM}){pct('pa')}"
        rf"\s*,?\s+(?:and|but)\s+(?:at\s+most|no\s+more\s+than|not\s+more\s+than|<=|≤)\s*(?P<b>{NUM}){pct('pb')}"
    ),
    # "Al 0-15 at.%", "Cr: 10 to 25 wt.%"
    rx(
        rf"{_SUBJECT}\s*:?\s+(?P<a>{NUM}){pct('pa')}\s*(?:-|~|to)\s*(?P<b>(?:\d+(?:\.\d+)?|\.\d+))(?![\w.])"
        rf"{pct('pb')}"
    ),
    rx(rf"{_SUBJECT}\s*{_COPULA}in\s*\[\s*(?P<a>{NUM})\s*,\s*(?P<b>{NUM})\s*\]{pct('pb')}"),
]
BOUND = rx(rf"{_SUBJECT}\s*{_COPULA}{_CMP}\s*(?P<v>{NUM}){pct('pct')}")
BOUND_REVERSED = rx(rf"(?<!\w){_CMP}\s*(?P<v>{NUM}){pct('pct')}\s+(?:of\s+|的\s*)?(?P<name>{_NAME})")

# --- how many components may be present, grid step, categorical choices -----------------------------
_CHOOSE_VERB = r"(?:choose|choosing|pick|picking|select|selecting|use|using)"
_AT_MOST = r"(?:at\s+most|up\s+to|no\s+more\s+than|not\s+more\s+than|a\s+maximum\s+of|max(?:imum)?(?:\s+of)?)"
_PRESENT_NOUN = r"(?:elements?|components?|ingredients?|constituents?)"
CARDINALITY_PATTERNS = [
    # "choose at most 3 of Cu, Ag, Zr, Ni and Co": the list is also the component list
    rx(
        rf"(?<!\w)(?:and\s+)?{_CHOOSE_VERB}\s+{_AT_MOST}\s+(?P<n>{_INT})\s+(?:{_PRESENT_NOUN}\s+)?"
        rf"(?:of|from|among)\s+(?:the\s+)?(?P<list>{_NAME_LIST})"
    ),
    # "at most 3 elements at once", "using at most 2 of them", "with at most 3 non-zero components"
    rx(
        rf"(?<!\w)(?:(?:{_CHOOSE_VERB}|with)\s+)?{_AT_MOST}\s+(?P<n>{_INT})\s+(?:(?:non-?zero|active|present)\s+)?"
        rf"(?:{_PRESENT_NOUN}|of\s+them)(?:\s+(?:at\s+(?:a\s+time|once)|present|non-?zero|active"
        r"|per\s+(?:sample|composition|experiment)|in\s+(?:each|any|one)\s+(?:sample|composition|experiment)))?"
        r"(?![\w])"
    ),
]
RESOLUTION_PATTERNS = [
    rx(
        rf"(?<!\w)(?:(?:in|with|on|using)\s+)?(?:(?:a|the)\s+)?(?:grid\s+)?steps?(?:\s+size)?\s*(?:of|is|:|=)?\s*"
        rf"(?P<v>{NUM}){pct('pct')}"
    ),
    rx(rf"(?<!\w)(?:rounded\s+)?to\s+the\s+nearest\s+(?P<v>{NUM}){pct('pct')}"),
    rx(
        rf"(?<!\w)(?:(?:with|at|on)\s+)?(?:(?:a|the)\s+)?(?:grid\s+)?resolution\s*(?:of|is|:|=)?\s*"
        rf"(?P<v>{NUM}){pct('pct')}"
    ),
    rx(rf"(?<!\w)(?:on\s+)?(?:an?\s+)?(?P<v>{NUM}){pct('pct')}\s+grid(?![\w])"),
]
_VARIABLE = rf"(?<![\w:.-]){_NOT_RESERVED}[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*(?![\w])"
_CHOICE = r"(?<![\w°.+-])(?!(?:or|and)(?![\w°+-]))[A-Za-z0-9°][\w°.+-]*(?<![.+-])(?![\w°])"
CATEGORY_PATTERNS = [
    # "annealing one of none, 150C and 200C", "solvent: toluene, xylene", "atmosphere either N2 or air";
    # a colon between two letters is inside a name (PEDOT:PSS), not before choices
    rx(
        rf"(?P<var>{_VARIABLE})(?:(?!:\w)\s*:\s*|\s+(?:(?:is|are)\s+)?(?:one\s+of|either|(?:chosen\s+)?from|among)\s+)"
        rf"(?P<choices>{_CHOICE}(?:(?:\s*,\s*|\s*,?\s*(?:or|and)\s+){_CHOICE})+)"
    ),
    # "annealing none, 150C or 200C": without a marker the last choice follows "or"
    rx(rf"(?P<var>{_VARIABLE})\s+(?P<choices>{_CHOICE}(?:\s*,\s*{_CHOICE})*\s*,?\s*or\s+{_CHOICE})"),
]
SPLIT_CHOICES = re.compile(r"\s*,?\s*(?:or|and)\s+|\s*,\s*", re.IGNORECASE)

# --- components -----------------------------------------------------------------------------------
SYSTEM = rx(
    r"(?<!\w)(?P<prefix>(?:(?:of|for|in|on|with|from|using)\s+)?(?:(?:a|an|the)\s+)?)"
    r"(?:(?:binary|ternary|quaternary|quinary|multi-?component|high-entropy|equiatomic)\s+)?"
    rf"(?P<names>{_SYSTEM_WORDS})(?:\s+(?P<noun>{_SYSTEM_NOUN}|compositions?|HEAs?|high-entropy\s+alloys?)(?![\w]))?"
)
_LIST_VERB = (
    r"(?:by\s+)?(?:tun(?:e|ing)|var(?:y|ying)|adjust(?:ing)?|chang(?:e|ing)|optimi[sz]ing|blend(?:ing)?"
    r"|combin(?:e|ing)|mix|among)"
    r"(?:\s+the\s+(?:ratios?|proportions?|amounts?|fractions?|composition|contents?)\s+of)?"
)
LIST = rx(
    rf"(?<!\w)(?P<prefix>of|from|for|with|using|mixing|containing|components?|ingredients?|{_SYSTEM_NOUN}\s+with"
    rf"|{_LIST_VERB}|(?:made|composed|consisting)\s+of)\s*:?\s+"
    r"(?:(?:the\s+)?(?:components?|ingredients?|elements?)\s*:?\s*)?"
    rf"(?P<list>{_OPEN_LIST})"
)
#: "TiO2 doped with Nb and Ta": the host and its dopants are the components.
DOPED = rx(rf"(?P<host>{_NAME})\s+(?:co-?)?doped\s+with\s+(?P<list>{_OPEN_LIST})")
#: "Ti the balance", "the balance Ti", "Fe (bal.)": the component that takes what the others leave.
BALANCE_PATTERNS = [
    rx(
        rf"(?P<name>{_NAME})\s+(?:(?:is|as|makes\s+up|forms?|being)\s+)?(?:the\s+)?"
        r"(?:balance|remainder|rest|bal\.)(?![\w])"
    ),
    rx(rf"(?<!\w)(?:the\s+)?(?:balance|remainder|rest)\s+(?:is\s+|being\s+|of\s+)?(?P<name>{_NAME})"),
    rx(rf"(?P<name>{_NAME})\s*\(\s*(?:balance|bal\.?|remainder)\s*\)"),
]
#: "by mass", "in mass fractions": what the fractions are fractions of.
BASIS = rx(
    r"(?<!\w)(?:(?:all\s+)?(?:amounts|fractions|percentages|compositions?|ratios?)\s+(?:are\s+)?)?"
    r"by\s+(?P<basis>mass|weight|volume|moles?|atoms?)(?![\w])"
)
UNIT_RE = re.compile(_UNIT)
SPLIT_LIST = re.compile(rf"\s*,\s*{_AND}\s+|\s*,\s*|\s+{_AND}\s+", re.IGNORECASE)
VERB_WORDS = re.compile(rf"(?<!\w)(?:(?P<up>{UP_VERBS})|(?P<down>{_DOWN_VERBS}))(?![\w])", re.IGNORECASE)
