"""Where instrument actors run: Ray custom resources tie an instrument to the node wired to it.

An instrument with ``resources: {"bench_a": 1}`` in ``lab.yaml`` gets its actor created with
``resources={"bench_a": 1}``, so on a cluster it is placed on a node started with
``ray start --resources='{"bench_a": 1}'``. :func:`check_placement` refuses, before any actor is
created, an instrument that no live node can host (it would otherwise wait forever).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, LabDescription

__all__ = ["actor_options", "check_placement", "cluster_nodes", "missing_resources"]


def actor_options(spec: InstrumentSpec) -> dict[str, Any]:
    """Ray actor options that place ``spec``'s actor (empty when it may run anywhere)."""
    return {"resources": dict(spec.resources)} if spec.resources else {}


def missing_resources(spec: InstrumentSpec, nodes: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """The resources ``spec`` needs that no single node offers, or None when some node can host it.

    Args:
        spec: The instrument.
        nodes: Live nodes, each ``{"node_id": str, "resources": {name: total amount}}``.

    Returns:
        None if a node offers every resource in the amount needed; otherwise the needs of the node
        that comes closest (fewest missing), name to amount.
    """
    if not spec.resources:
        return None
    best: dict[str, float] | None = None
    for node in nodes:
        offered = node.get("resources", {})
        lacking = {k: v for k, v in spec.resources.items() if float(offered.get(k, 0.0)) < v}
        if not lacking:
            return None
        if best is None or len(lacking) < len(best):
            best = lacking
    return dict(spec.resources) if best is None else best


def check_placement(lab: LabDescription, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Refuse instruments whose Ray resources no live node offers.

    Args:
        lab: The lab description.
        nodes: Live nodes, as :func:`cluster_nodes` returns them.

    Raises:
        athanor.errors.InstrumentError: Some instrument cannot be placed; the message names it, the
            resources it needs, what the cluster offers and how to fix it.
    """
    problems = []
    for spec in lab.instruments:
        lacking = missing_resources(spec, nodes)
        if lacking is not None:
            needs = ", ".join(f"{k}={v:g}" for k, v in lacking.items())
            problems.append(
                f"instrument {spec.name} needs Ray resource(s) {needs}, which no live node offers"
            )
    if problems:
        offered = sorted({k for n in nodes for k in n.get("resources", {}) if not _builtin(k)})
        raise InstrumentError(
            "; ".join(problems)
            + f". Custom resources in this cluster: {', '.join(offered) or 'none'}. Start the instrument's"
            " node with `ray start --address=<head> --resources='{\"<name>\": 1}'`, or correct the"
            " instrument's resources in lab.yaml"
        )


def cluster_nodes() -> list[dict[str, Any]]:
    """Live nodes of the connected Ray cluster: ``[{"node_id": str, "resources": {name: amount}}]``."""
    import ray

    return [
        {"node_id": node["NodeID"], "resources": dict(node.get("Resources", {}))}
        for node in ray.nodes()
        if node.get("Alive", node.get("alive", False))
    ]


def _builtin(resource: str) -> bool:
    """Resources Ray defines itself (CPU, memory, node markers), not set by the user."""
    return resource in {"CPU", "GPU", "memory", "object_store_memory"} or resource.startswith(
        ("node:", "accelerator_type:")
    )
