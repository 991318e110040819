"""The queue of scheduled campaigns: order, claims, cancelling, interrupted jobs, the worker lock."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from athanor.errors import AthanorError
from athanor.spec import CampaignSpec
from runs.scheduler import Schedule, Worker, WorkerLock, materialise

T0 = dt.datetime(2026, 11, 27, 22, 0, tzinfo=dt.UTC)
SPEC = CampaignSpec.model_validate(
    {
        "title": "queue test",
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": 4, "batch_size": 2},
        "seed": 5,
    }
)


@pytest.fixture
def schedule(tmp_path) -> Schedule:
    return Schedule(tmp_path / "schedule.db")


def add(schedule: Schedule, not_before: dt.datetime, title: str = "queue test"):
    return schedule.add(
        SPEC.model_copy(update={"title": title}), request="campaign.yaml", not_before=not_before, now=T0
    )


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid names no process any more
    return child.pid


def test_jobs_run_in_not_before_order_then_id_and_not_before_they_are_due(schedule):
    later = add(schedule, T0 + dt.timedelta(hours=2), "later")
    first_now = add(schedule, T0, "first now")
    earlier = add(schedule, T0 - dt.timedelta(hours=1), "earlier")
    second_now = add(schedule, T0, "second now")
    assert [later.id, first_now.id, earlier.id, second_now.id] == ["S0001", "S0002", "S0003", "S0004"]
    worker = Worker.current()

    claimed = [schedule.claim(worker, now=T0) for _ in range(4)]

    assert [job.id if job else None for job in claimed] == ["S0003", "S0002", "S0004", None]
    assert all(job.status == "running" and job.attempts == 1 and job.worker == worker for job in claimed[:3])
    assert schedule.get("S1").status == "queued"  # not due yet
    assert schedule.next_due().id == "S0001"
    due = schedule.claim(worker, now=T0 + dt.timedelta(hours=2))
    assert due is not None and due.id == "S0001"


def test_two_claimers_never_get_the_same_job(tmp_path):
    path = tmp_path / "schedule.db"
    jobs = {add(Schedule(path), T0).id for _ in range(24)}
    barrier = threading.Barrier(4)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claim_all(slot: int) -> None:
        queue, worker = Schedule(path, timeout_s=10), Worker.current()
        barrier.wait()
        while (job := queue.claim(worker, now=T0)) is not None:
            taken[slot].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for ids in taken for job_id in ids]
    assert sorted(every) == sorted(jobs)  # each job claimed exactly once
    assert all(job.attempts == 1 for job in Schedule(path).list())


def test_only_a_queued_job_can_be_cancelled_and_a_running_one_says_how_to_stop_it(schedule):
    queued, running = add(schedule, T0), add(schedule, T0 + dt.timedelta(minutes=1))
    cancelled = schedule.cancel(queued.id)
    assert cancelled.status == "cancelled"
    worker = Worker.current()
    job = schedule.claim(worker, now=T0 + dt.timedelta(hours=1))
    assert job is not None and job.id == running.id  # the cancelled job is never claimed
    schedule.started(job.id, worker, "20261127-220000-queue-test-abcd")
    with pytest.raises(AthanorError, match=rf"kill -TERM {os.getpid()}.*the job is stopped"):
        schedule.cancel(job.id)
    with pytest.raises(AthanorError, match="is cancelled; only a queued or stopped job"):
        schedule.cancel(queued.id)
    with pytest.raises(AthanorError, match=r"no scheduled job 'S0099'.*athanor schedule list"):
        schedule.cancel("S0099")
    assert schedule.get(job.id).status == "running"


def test_a_stopped_job_is_reclaimed_once_for_resuming_unless_cancelled(schedule):
    first, second = add(schedule, T0), add(schedule, T0 + dt.timedelta(minutes=1))
    worker = Worker.current()
    for job in (first, second):
        assert schedule.claim(worker, now=T0 + dt.timedelta(hours=1)).id == job.id
        schedule.started(job.id, worker, f"run-{job.id}")
        schedule.record_outcome(job.id, worker, "stopped", "stopped by SIGTERM")
    assert schedule.cancel(second.id).status == "cancelled"  # the user keeps this one stopped
    later = Worker(host=worker.host, pid=worker.pid, token="next-boot")
    reclaimed = schedule.reclaim(later)
    assert reclaimed is not None and reclaimed.id == first.id
    assert reclaimed.status == "running" and reclaimed.worker == later and reclaimed.attempts == 2
    assert reclaimed.run_id == f"run-{first.id}"  # resumed, not restarted
    assert schedule.reclaim(later) is None


def test_a_job_whose_worker_is_gone_is_interrupted_and_can_be_adopted_once(schedule):
    host = socket.gethostname()
    gone = Worker(host=host, pid=dead_pid(), token="gone")
    alive = Worker(host=host, pid=os.getpid(), token="alive")
    elsewhere = Worker(host="another-host", pid=1, token="remote")
    for worker in (gone, alive, elsewhere, elsewhere):
        add(schedule, T0)
        schedule.claim(worker, now=T0)
    for job_id, worker in (("S0001", gone), ("S0002", alive), ("S0004", elsewhere)):
        schedule.heartbeat(job_id, worker, now=T0 + dt.timedelta(minutes=30))

    # judged at T0 + 31 min with a 20 min limit: S0001's pid is dead; S0003's heartbeat is stale
    now = T0 + dt.timedelta(minutes=31)
    found = schedule.interrupted(stale_after_s=1200, now=now)
    assert [job.id for job in found] == ["S0001", "S0003"]
    # a worker holding the lock knows no other worker lives on this host: S0002 too
    me = Worker.current()
    held = schedule.interrupted(me, stale_after_s=1200, now=now)
    assert [job.id for job in held] == ["S0001", "S0002", "S0003"]

    adopted = schedule.adopt(found[0], me, now=now)
    assert adopted is not None and adopted.worker == me and adopted.attempts == 2
    assert "gone" in adopted.message and adopted.status == "running"
    assert schedule.adopt(found[0], Worker.current(), now=now) is None  # taken already
    assert not schedule.heartbeat("S0001", gone)  # the old worker can no longer write to it
    assert not schedule.record_outcome("S0001", gone, "finished", "too late")
    assert schedule.record_outcome("S0001", me, "finished", "done")
    assert schedule.get("S0001").status == "finished"
    assert "S0001" not in [job.id for job in schedule.interrupted(me, now=now)]


def test_the_snapshot_is_what_was_scheduled(schedule, tmp_path):
    lab_text = (Path(__file__).parents[2] / "instruments" / "labs" / "virtual.yaml").read_text()
    job = schedule.add(SPEC, request="campaign.yaml", not_before=T0, lab_yaml=lab_text, lab_source="lab.yaml")
    campaign, lab = materialise(schedule.get(job.id), tmp_path / "out")
    assert CampaignSpec.from_file(campaign) == SPEC
    assert lab is not None and lab.read_text() == lab_text
    with pytest.raises(AthanorError, match=r"broken\.yaml: not a valid lab description"):
        schedule.add(SPEC, request="x", not_before=T0, lab_yaml="wells: []\n", lab_source="broken.yaml")
    assert len(schedule.list()) == 1


def test_a_second_worker_is_refused_naming_the_pid_that_holds_the_lock(tmp_path):
    path = tmp_path / "schedule.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from runs.scheduler import WorkerLock;"
            f" lock = WorkerLock(Path({str(path)!r})); lock.acquire(); print('held', flush=True);"
            " sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AthanorError, match=rf"another schedule worker \(pid {holder.pid} on "):
            WorkerLock(path).acquire()
        assert WorkerLock(path).holder() == f"pid {holder.pid} on {socket.gethostname()}"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with WorkerLock(path) as lock:  # the lock went with the process
        assert lock.holder() == f"pid {os.getpid()} on {socket.gethostname()}"
        with pytest.raises(AthanorError, match=f"pid {os.getpid()}"):
            WorkerLock(path).acquire()
    assert WorkerLock(path).holder() is None
