"""Placement by Ray custom resources, refusal of unplaceable instruments, joining a cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from athanor.errors import InstrumentError
from athanor.lab import LabDescription
from instruments.placement import actor_options, check_placement, cluster_nodes, missing_resources
from instruments.ray_runtime import check_ray_address, cluster_environment
from instruments.virtual_lab import RayLab, virtual_lab_description

ROOT = Path(__file__).resolve().parents[2]


def lab_needing(meter_resources: dict[str, float]) -> LabDescription:
    data = virtual_lab_description(["A", "B"], time_scale=0.0).model_dump(mode="json")
    data["instruments"][1]["resources"] = meter_resources
    return LabDescription.model_validate(data)


NODES = [
    {"node_id": "head", "resources": {"CPU": 2.0, "memory": 1e9, "node:10.0.0.1": 1.0}},
    {"node_id": "bench", "resources": {"CPU": 1.0, "bench_a": 1.0}},
]


def test_actor_options_carry_the_instrument_resources():
    lab = lab_needing({"bench_a": 1})
    assert actor_options(lab.instrument("conductivity_meter")) == {"resources": {"bench_a": 1.0}}
    assert actor_options(lab.instrument("liquid_handler")) == {}


def test_a_resource_must_be_offered_by_one_node_in_the_amount_needed():
    lab = lab_needing({"bench_a": 1})
    check_placement(lab, NODES)  # the bench node can host the meter
    meter = lab_needing({"bench_a": 2}).instrument("conductivity_meter")
    assert missing_resources(meter, NODES) == {"bench_a": 2.0}
    split = lab_needing({"bench_a": 1, "memory": 2e9}).instrument("conductivity_meter")
    assert missing_resources(split, NODES) is not None  # each node has one, no node has both
    with pytest.raises(InstrumentError) as caught:
        check_placement(lab_needing({"bench_b": 1}), NODES)
    message = str(caught.value)
    assert "conductivity_meter needs Ray resource(s) bench_b=1" in message
    assert "Custom resources in this cluster: bench_a" in message
    assert "ray start" in message


def test_an_unplaceable_instrument_is_refused_at_start_without_hanging(ray_local):
    import ray

    assert any("CPU" in node["resources"] for node in cluster_nodes())
    lab = RayLab(lab_needing({"bench_nowhere": 1}), seed=0, start_timeout_s=300)
    began = time.monotonic()
    with pytest.raises(InstrumentError, match="bench_nowhere"):
        lab.start()
    assert time.monotonic() - began < 5
    with pytest.raises(ValueError):
        ray.get_actor("liquid_handler", namespace=lab.namespace)  # nothing was created


def test_an_unreachable_cluster_is_reported_quickly():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    began = time.monotonic()
    with pytest.raises(InstrumentError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_ray_address(f"127.0.0.1:{port}", timeout_s=3)
    with pytest.raises(InstrumentError, match="cannot reach"):
        check_ray_address(f"ray://127.0.0.1:{port}", timeout_s=3)
    assert time.monotonic() - began < 10
    with pytest.raises(InstrumentError, match="not host:port"):
        check_ray_address("head-node:port")
    check_ray_address("auto")  # left to Ray's own discovery


CLUSTER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    import ray
    from ray.cluster_utils import Cluster
    from athanor.errors import InstrumentError
    from athanor.lab import LabDescription
    from instruments.ray_runtime import ensure_ray
    from instruments.virtual_lab import RayLab, virtual_lab_description

    out = {{}}
    try:
        ensure_ray("127.0.0.1:{dead_port}", None, connect_timeout_s=3)
    except InstrumentError as error:
        out["unreachable"] = str(error)
    cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
    bench = cluster.add_node(num_cpus=1, resources={{"bench_a": 1}})
    cluster.wait_for_nodes()
    try:
        out["joined"] = ensure_ray(cluster.address, None)
        out["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        data = virtual_lab_description(["A", "B"], time_scale=0.0).model_dump(mode="json")
        data["instruments"][1]["resources"] = {{"bench_a": 1}}
        lab = RayLab(LabDescription.model_validate(data), seed=0, start_timeout_s=60)
        lab.start()
        out["meter_node"] = ray.get(lab.actor("conductivity_meter").node_id.remote())
        out["bench_node"] = bench.node_id
        out["head_node"] = cluster.head_node.node_id
        lab.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow
def test_an_instrument_actor_lands_on_the_node_with_its_resource(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    script = CLUSTER.format(root=str(ROOT), dead_port=dead_port)
    # the cluster's nodes are started with this home's token, as `athanor lab cluster-env` prints it
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(cluster_environment(tmp_path / "ray"))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert "cannot reach the Ray cluster" in out["unreachable"]
    assert out["joined"] is True and out["nodes"] == 2  # joined the cluster, started no Ray of its own
    assert out["meter_node"] == out["bench_node"] != out["head_node"]
