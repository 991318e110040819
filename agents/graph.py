"""The campaign state machine: PI -> designer -> coder -> experimenter -> analyst -> PI, until stop.

From the PI the graph goes back to the designer when there is budget and a free slot, to the
experimenter when it must wait for running experiments, or to the end.

Compiled with a SQLite checkpointer in the run folder and run with ``durability="sync"``: every
super-step is on disk before the next one starts, which a run next to hardware needs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agents import analyst, coder, designer, experimenter, pi
from agents.state import CampaignState, Ports
from athanor.spec import CampaignSpec

__all__ = ["build_graph", "rewind_checkpoints", "run_campaign"]

_EXPERIMENT = re.compile(r"E\d+")

_NODES: dict[str, Callable[[CampaignState, Ports], dict[str, Any]]] = {
    "pi_plan": pi.plan,
    "designer": designer.design,
    "coder": coder.code,
    "experimenter": experimenter.experiment,
    "analyst": analyst.analyse,
    "pi_decide": pi.decide,
}


def _bind(name: str, node: Callable[[CampaignState, Ports], dict[str, Any]], ports: Ports) -> Callable:
    def bound(state: CampaignState) -> dict[str, Any]:
        ports.context.record("node", {"name": name})  # the graph's name, whatever the function is called
        return node(state, ports)

    bound.__name__ = node.__name__
    return bound


def build_graph(ports: Ports) -> StateGraph:
    """The uncompiled campaign graph with every node bound to ``ports``."""
    graph = StateGraph(CampaignState)
    for name, node in _NODES.items():
        graph.add_node(name, _bind(name, node, ports))
    graph.add_edge(START, "pi_plan")
    graph.add_edge("pi_plan", "designer")
    graph.add_edge("designer", "coder")
    graph.add_edge("coder", "experimenter")
    graph.add_edge("experimenter", "analyst")
    graph.add_edge("analyst", "pi_decide")
    graph.add_conditional_edges(
        "pi_decide", pi.route, {"continue": "designer", "wait": "experimenter", "stop": END}
    )
    return graph


def run_campaign(
    spec: CampaignSpec, ports: Ports, checkpoint_path: Path, resume: bool = False
) -> CampaignState:
    """Run a campaign to its end and return the final state.

    Args:
        spec: The validated campaign spec.
        ports: The (recorded) ports.
        checkpoint_path: SQLite file for LangGraph's checkpoints (one thread per run id).
        resume: Continue from the last checkpoint of this run instead of starting afresh. A run
            with no checkpoint yet (stopped before its first super-step was on disk) starts from
            ``spec``, as a new run does.
    """
    with closing(sqlite3.connect(checkpoint_path, check_same_thread=False)) as connection:
        app = build_graph(ports).compile(checkpointer=SqliteSaver(connection))
        # A batch is 5 super-steps; allow one batch per experiment and some slack.
        limit = 10 + 6 * (spec.budget.experiments + 1)
        config = {"configurable": {"thread_id": ports.context.run_id}, "recursion_limit": limit}
        initial: CampaignState | None = {"spec": spec.model_dump(mode="json"), "observations": []}
        if resume:
            snapshot = app.get_state(config)
            # ids handed out after the checkpoint went into a step that never finished
            ports.context.continue_ids_after(_last_experiment_number(snapshot.values or {}))
            if snapshot.created_at is not None:  # a checkpoint of this run is on disk
                if not snapshot.next:
                    return snapshot.values
                initial = None  # LangGraph continues from the checkpoint
        return app.invoke(initial, config, durability="sync")


def _last_experiment_number(value: Any) -> int:
    """The highest ``E<n>`` experiment id anywhere in a campaign state (0 when there is none)."""
    if isinstance(value, dict):
        found = [_last_experiment_number(v) for v in value.values()]
        identifier = value.get("experiment_id")
        if isinstance(identifier, str) and _EXPERIMENT.fullmatch(identifier):
            found.append(int(identifier[1:]))
        return max(found, default=0)
    if isinstance(value, list):
        return max((_last_experiment_number(v) for v in value), default=0)
    return 0


def rewind_checkpoints(checkpoint_path: Path, thread_id: str, next_node: str) -> bool:
    """Drop a run's checkpoints after the latest one from which ``next_node`` runs next.

    A replay of an attempt that was cut off goes on until it would record more than the attempt
    did, which can be past the last checkpoint the killed process wrote (killed between an event
    and its step's checkpoint). The next attempt's first ``node`` event says where the real resume
    started; rewinding the replay's own checkpoints there resumes it from the same step.

    Args:
        checkpoint_path: The replay's checkpoint file (never a recorded run's).
        thread_id: The run id.
        next_node: A node of :data:`_NODES`.

    Returns:
        Whether such a checkpoint was found (and everything after it dropped).
    """
    config = {"configurable": {"thread_id": thread_id}}
    with closing(sqlite3.connect(checkpoint_path, check_same_thread=False)) as connection:
        app = build_graph(None).compile(checkpointer=SqliteSaver(connection))  # type: ignore[arg-type]
        target = next((s for s in app.get_state_history(config) if s.next == (next_node,)), None)
        if target is None:
            return False
        checkpoint_id = target.config["configurable"]["checkpoint_id"]
        with connection:
            later = (thread_id, checkpoint_id)
            connection.execute("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_id > ?", later)
            # the writes of the step that ran from it too: the real resume ran that step again
            connection.execute("DELETE FROM writes WHERE thread_id = ? AND checkpoint_id >= ?", later)
    return True
