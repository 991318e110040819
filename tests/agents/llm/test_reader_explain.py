"""What ``athanor plan --explain`` shows: which words of a request became which field."""

from __future__ import annotations

from agents.llm.reader import explain


def test_each_phrase_of_a_chinese_request_is_shown_with_the_field_it_became():
    request = "最小化 Li2S、P2S5 和 LiBr 的成本，LiBr 介于 0.1 和 0.3 之间，之和为 1，16 次实验，每批 4 个"
    explanation = explain(request)
    assert explanation.rows == [
        ("最小化 Li2S、P2S5 和 LiBr 的成本", "objective", "minimise cost; components Li2S, P2S5, LiBr"),
        ("LiBr 介于 0.1 和 0.3", "bound", "LiBr in [0.1, 0.3]"),
        ("之和为 1", "sum rule", "the amounts add up to 1"),
        ("16 次实验", "budget", "16 experiments"),
        ("每批 4", "batch size", "4 at a time"),
    ]
    assert explanation.problems == [] and explanation.spec is not None


def test_what_the_request_does_not_state_is_listed_with_its_default():
    explanation = explain("Raise the hardness of a Mo-Nb-Ta alloy, Ta at most 30 at.%, 18 runs")
    defaults = dict(explanation.defaults)
    assert defaults["batch size"] == "1: one experiment at a time (not stated)"
    assert defaults["sum rule"] == "the amounts add up to 100 (implied by the percent amounts)"
    assert defaults["bounds"] == "Mo, Nb: 0 to 100 (not bounded)"
    assert "basis" not in defaults  # at.% says: mole fractions


def test_words_no_phrase_reads_are_shown_where_they_stand():
    explanation = explain("Reduce the wear of TiN and CrN, sputtered at 300 W, 9 runs")
    assert [row[:2] for row in explanation.rows] == [
        ("Reduce the wear", "objective"),
        ("of TiN and CrN", "components"),
        ("sputtered at 300 W", "not read"),
        ("9 runs", "budget"),
    ]
    assert explanation.problems == ['could not read "sputtered at 300 W"'] and explanation.spec is None
