"""The PI reading a request: it asks what the request leaves open instead of guessing, and a language
model's reading is checked against the request's own words before anything runs.

The model is the local OpenAI-compatible test server, scripted to answer with a spec that invents a
bound, drops a component or flips the direction.
"""

from __future__ import annotations

import pytest
from support import fake_openai_server as fake

from agents.llm import OfflineLLM, make_llm
from agents.pi import understand
from athanor.asking import Question
from athanor.errors import ReadingsDisagree, RequestNotUnderstood, SpecError
from athanor.spec import CampaignSpec

HARDNESS = "Maximise the hardness of Cu, Ag and Zr, Ag at most 0.3, 20 experiments in batches of 4"
READING = {
    "title": "hardness of Cu, Ag and Zr",
    "components": [
        {"name": "Cu", "lower": 0.0, "upper": 1.0},
        {"name": "Ag", "lower": 0.0, "upper": 0.3},
        {"name": "Zr", "lower": 0.0, "upper": 1.0},
    ],
    "objectives": [{"name": "hardness", "direction": "maximise", "unit": "HV"}],
    "budget": {"experiments": 20, "batch_size": 4},
}


class Answers:
    """Answers questions by the field they settle, keeping every question asked."""

    def __init__(self, **by_field: str) -> None:
        self.by_field = {field.replace("__", "."): answer for field, answer in by_field.items()}
        self.asked: list[Question] = []

    def __call__(self, question: Question) -> str:
        self.asked.append(question)
        return self.by_field[question.field]


# --- ask, don't guess --------------------------------------------------------------------------------


def test_without_anyone_to_ask_a_missing_budget_is_refused_with_the_question():
    with pytest.raises(RequestNotUnderstood) as info:
        understand("Minimise the band gap of TiO2 and ZnO, in batches of 3", OfflineLLM())
    assert "no budget: how many experiments may the campaign run in all?" in str(info.value)
    assert [q.field for q in info.value.questions] == ["budget.experiments"]


def test_the_answers_complete_the_request_as_words_the_spec_keeps():
    answers = Answers(budget__experiments="24", budget__batch_size="4")
    spec = understand("Minimise the band gap of TiO2 and ZnO", OfflineLLM(), ask=answers)
    assert (spec.budget.experiments, spec.budget.batch_size) == (24, 4)
    assert spec.request == "Minimise the band gap of TiO2 and ZnO; 24 experiments; 4 at a time"
    assert [q.field for q in answers.asked] == ["budget.experiments", "budget.batch_size"]


def test_a_chinese_request_is_completed_by_its_answers_too():
    answers = Answers(budget__experiments="12", budget__batch_size="2")
    spec = understand("最小化 TiO2 和 ZnO 的带隙，ZnO 不超过 0.4", OfflineLLM(), ask=answers)
    assert (spec.budget.experiments, spec.budget.batch_size) == (12, 2)
    assert {c.name: c.upper for c in spec.components} == {"TiO2": 1.0, "ZnO": 0.4}


def test_amounts_too_large_for_fractions_ask_what_they_add_up_to():
    request = "Maximise the hardness of Cu, Ag and Zr, Ag at most 30, 20 runs, 5 at a time"
    with pytest.raises(RequestNotUnderstood) as info:
        understand(request, OfflineLLM())
    assert [q.field for q in info.value.questions] == ["sum_rule.total"]
    spec = understand(request, OfflineLLM(), ask=Answers(sum_rule__total="100"))
    assert spec.sum_rule is not None and spec.sum_rule.total == 100.0
    assert {c.name: c.upper for c in spec.components} == {"Cu": 100.0, "Ag": 30.0, "Zr": 100.0}
    assert spec.request.endswith("; summing to 100 %")


def test_an_answer_is_checked_as_a_stated_value_would_be():
    # an answer of 0 experiments is refused by the rule that refuses "0 experiments" in a request
    answers = Answers(budget__experiments="0")
    with pytest.raises(SpecError, match=r"budget\.experiments"):
        understand("Maximise the yield of A and B, 5 at a time", OfflineLLM(), ask=answers)


def test_a_request_that_states_everything_is_not_asked_about():
    answers = Answers()
    spec = understand(HARDNESS, OfflineLLM(), ask=answers)
    assert answers.asked == [] and spec.request == HARDNESS


def test_a_request_refused_for_other_reasons_is_not_asked_about():
    answers = Answers()
    with pytest.raises(RequestNotUnderstood, match="magic dust"):
        understand("Maximise the yield of A and B with magic dust", OfflineLLM(), ask=answers)
    assert answers.asked == []


# --- an LLM's reading is checked against the request ------------------------------------------------


@pytest.fixture
def model():
    with fake.FakeOpenAIServer() as server:
        settings = {"model": "fake-model", "api_key": "sk-test", "max_retries": 0}
        yield server, make_llm("openai", base_url=server.base_url, **settings)


def reading(**changes: object) -> dict[str, object]:
    return {**READING, **changes}


def test_a_reading_that_agrees_with_the_request_is_taken(model):
    server, llm = model
    server.script(fake.answer(READING))
    spec = understand(HARDNESS, llm)
    assert {c.name: c.upper for c in spec.components} == {"Cu": 1.0, "Ag": 0.3, "Zr": 1.0}


def test_a_bound_the_request_never_states_stops_the_campaign(model):
    server, llm = model
    invented = [*READING["components"][:2], {"name": "Zr", "lower": 0.1, "upper": 1.0}]
    server.script(fake.answer(reading(components=invented)))
    with pytest.raises(ReadingsDisagree) as info:
        understand(HARDNESS, llm)
    assert info.value.disagreements == (
        "the lower bound of Zr is 0.1, a number the request does not contain (an invented value)",
    )
    message = str(info.value)
    assert "The model read: maximise hardness; Cu 0-1, Ag 0-0.3, Zr 0.1-1" in message
    assert "The offline reader read: maximise hardness; Cu 0-1, Ag 0-0.3, Zr 0-1" in message
    assert "Nothing was run." in message


def test_a_component_the_model_leaves_out_stops_the_campaign(model):
    server, llm = model
    dropped = [{"name": "Cu", "lower": 0.0, "upper": 1.0}, {"name": "Ag", "lower": 0.0, "upper": 0.3}]
    server.script(fake.answer(reading(components=dropped)))
    with pytest.raises(ReadingsDisagree) as info:
        understand(HARDNESS, llm)
    assert info.value.disagreements == (
        "the request names the component Zr, which the model's reading leaves out",
    )


def test_a_component_the_request_never_names_stops_the_campaign(model):
    server, llm = model
    added = [*READING["components"], {"name": "Ni", "lower": 0.0, "upper": 1.0}]
    server.script(fake.answer(reading(components=added)))
    with pytest.raises(ReadingsDisagree, match="component Ni is not named in the request"):
        understand(HARDNESS, llm)


def test_a_flipped_direction_stops_the_campaign(model):
    server, llm = model
    flipped = [{"name": "hardness", "direction": "minimise", "unit": "HV"}]
    server.script(fake.answer(reading(objectives=flipped)))
    with pytest.raises(ReadingsDisagree) as info:
        understand(HARDNESS, llm)
    assert info.value.disagreements == (
        'the request asks to maximise hardness ("Maximise the hardness"), but the model\'s reading would'
        " minimise hardness",
    )


def test_a_chinese_request_is_checked_in_its_own_numbers(model):
    server, llm = model
    request = "最大化 Cu、Ag 和 Zr 的硬度，Ag 不超过 0.3，二十次实验，每批四个"
    server.script(fake.answer(READING), fake.answer(reading(budget={"experiments": 30, "batch_size": 4})))
    assert understand(request, llm).budget.experiments == 20  # 二十 is 20
    with pytest.raises(ReadingsDisagree, match="the budget is 30, a number the request does not"):
        understand(request, llm)


def test_a_percent_in_the_request_matches_its_fraction_in_the_reading(model):
    server, llm = model
    server.script(fake.answer(READING))
    request = "Maximise the hardness of Cu, Ag and Zr, Ag at most 30 %, 20 experiments, 4 at a time"
    spec = understand(request, llm)
    assert spec.components[1].upper == 0.3


@pytest.mark.parametrize(("answer", "upper"), [("reader", 1.0), ("model", 0.5)])
def test_on_a_terminal_the_user_picks_the_reading(model, answer, upper):
    server, llm = model
    invented = [*READING["components"][:2], {"name": "Zr", "lower": 0.0, "upper": 0.5}]
    server.script(fake.answer(reading(components=invented)))
    answers = Answers(reading=answer)
    spec = understand(HARDNESS, llm, ask=answers)
    assert isinstance(spec, CampaignSpec) and spec.components[2].upper == upper
    (question,) = answers.asked
    assert question.choices == ("model", "reader", "stop")
    assert "the upper bound of Zr is 0.5" in question.text
    assert question.text.endswith("Which reading is right?")


def test_on_a_terminal_stop_refuses_the_reading(model):
    server, llm = model
    server.script(fake.answer(reading(objectives=[{"name": "hardness", "direction": "minimise"}])))
    with pytest.raises(ReadingsDisagree):
        understand(HARDNESS, llm, ask=Answers(reading="stop"))
