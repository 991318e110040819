"""Record the campaigns that ``test_recorded_replays.py`` replays (run again only to renew them).

Each campaign is small (a few experiments, the mock LLM, no literature, a tiny time scale) so that
its replay takes seconds. Usage, from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tests/replays/record.py [name ...]

Each run's ``events.jsonl`` is copied to ``tests/replays/<name>/``; the rest of the run folder (report,
checkpoints, observations) is not needed to replay it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

SINGLE = {
    "title": "replay fixture single objective",
    "components": [{"name": "A"}, {"name": "B", "upper": 0.8}, {"name": "C"}],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 7, "batch_size": 3},
    "seed": 11,
}
PARETO = {
    "title": "replay fixture two objectives",
    "components": [{"name": "P3HT", "lower": 0.3}, {"name": "D1"}, {"name": "D2"}],
    "sum_rule": {"total": 1.0},
    "objectives": [
        {"name": "conductivity", "unit": "S/cm", "threshold": 1.0},
        {"name": "transmittance", "unit": "%"},
    ],
    "budget": {"experiments": 6, "batch_size": 3},
    "seed": 4,
}
MIXED = {
    "title": "replay fixture mixed space",
    "components": [{"name": n} for n in ["Cu", "Ag", "Zr", "Ni"]],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 6, "batch_size": 3},
    "max_active_components": 2,
    "resolution": 0.05,
    "categories": [{"name": "annealing", "choices": ["none", "150C"]}],
    "seed": 8,
}
CHEAP_SOURCE = {
    "title": "replay fixture cheap source",
    "components": [{"name": n} for n in ["A", "B", "C"]],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 6, "batch_size": 3},
    "fidelities": [
        {"name": "experiment", "cost": 1},
        {"name": "screen", "cost": 0.05, "simulator": "instruments.virtual_world:screen"},
    ],
    "seed": 6,
}
PRIOR = {
    "title": "replay fixture prior data",
    "components": [{"name": "A", "upper": 0.9}, {"name": "B"}, {"name": "C"}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 5, "batch_size": 3},
    "seed": 9,
    "prior_data": "earlier.csv",
}
#: Earlier experiments of the prior-data campaign: three usable rows, a failed one, one outside A's bound.
PRIOR_ROWS = (
    "experiment_id,A,B,C,conductivity,status,note\n"
    "E0001,0.15,0.35,0.5,22.5,ok,notebook p. 4\n"
    "E0002,0.6,0.2,0.2,95,ok,\n"
    "E0003,0.3,0.3,0.4,,failed,film peeled off\n"
    "E0004,0.92,0.04,0.04,40,ok,\n"
    "E0005,0.35,0.5,0.15,61,ok,\n"
)

CAMPAIGNS: dict[str, dict[str, Any]] = {
    "single_objective": SINGLE,
    "pareto": PARETO,
    "mixed_categorical": MIXED,
    "cheap_source": CHEAP_SOURCE,
    "prior_data": PRIOR,
}


def record(name: str, scratch: Path) -> Path:
    """Run campaign ``name`` in ``scratch`` and copy its event log next to this file."""
    import yaml

    from athanor.app import RunOptions, run

    spec = CAMPAIGNS[name]
    folder = scratch / name
    folder.mkdir()
    campaign = folder / "campaign.yaml"
    campaign.write_text(yaml.safe_dump({"request": spec["title"], **spec}), encoding="utf-8")
    (folder / "earlier.csv").write_text(PRIOR_ROWS, encoding="utf-8")
    options = RunOptions(llm="mock", literature=False, time_scale=0.001)
    result = run(str(campaign), options)
    target = HERE / name
    target.mkdir(exist_ok=True)
    shutil.copyfile(result.run_dir / "events.jsonl", target / "events.jsonl")
    return target / "events.jsonl"


def main(names: list[str]) -> None:
    """Record the named campaigns (all of them when none is named)."""
    with tempfile.TemporaryDirectory(prefix="athanor-fixtures-") as scratch:
        os.environ["ATHANOR_HOME"] = str(Path(scratch) / "home")  # one home: Ray starts once
        for name in names or list(CAMPAIGNS):
            print(name, record(name, Path(scratch)))


if __name__ == "__main__":
    main(sys.argv[1:])
