"""The PI cites only passages that are about the campaign, and records what it left out."""

from __future__ import annotations

from typing import Any

from agents.pi import MIN_RELEVANCE, plan
from agents.state import Ports
from athanor.ports import Passage
from athanor.spec import CampaignSpec


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


class Store:
    """A literature store that answers every query with the same passages, nearest first."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores
        self.queries: list[str] = []

    def search(self, query: str, k: int = 4) -> list[Passage]:
        self.queries.append(query)
        return [
            Passage(chunk_id=f"doc#{i}", text="...", citation=f"Ref {i}", score=s)
            for i, s in enumerate(self.scores[:k])
        ]


def grounding(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = CampaignSpec.model_validate(
        {
            "title": "CuAgZr",
            "components": [{"name": "Cu"}, {"name": "Ag"}, {"name": "Zr"}],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 10},
        }
    )
    context = Context()
    ports = Ports(llm=None, knowledge=Store(scores), instruments=None, context=context, lab=None)
    update = plan({"spec": spec.model_dump(mode="json")}, ports)
    (event,) = [payload for kind, payload in context.events if kind == "grounding"]
    return update, event


def test_off_topic_nearest_passages_are_not_cited():
    update, event = grounding([0.36, 0.33, 0.27, 0.23])  # what an alloy request gets from the shipped store
    assert update["citations"] == []
    assert event["passages"] == []
    assert event["not_cited"] == ["doc#0", "doc#1", "doc#2", "doc#3"]


def test_relevant_passages_are_cited_and_the_rest_recorded_as_left_out():
    update, event = grounding([0.65, MIN_RELEVANCE, MIN_RELEVANCE - 0.01, 0.1])
    assert update["citations"] == ["doc#0", "doc#1"]
    assert [p["chunk_id"] for p in event["passages"]] == ["doc#0", "doc#1"]
    assert event["not_cited"] == ["doc#2", "doc#3"]
    assert event["min_score"] == MIN_RELEVANCE
