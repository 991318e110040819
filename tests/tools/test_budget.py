"""The roles add up a campaign's costs and judge its cheap source without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pi_analyst_and_experimenter_load_no_torch_to_count_the_budget():
    script = (
        "import sys\n"
        "import agents.analyst, agents.experimenter, agents.pi, tools.budget, tools.simulators\n"
        "from athanor.spec import CampaignSpec\n"
        "spec = CampaignSpec.model_validate({'components': [{'name': 'A'}, {'name': 'B'}],"
        " 'objectives': [{'name': 'y'}], 'budget': {'experiments': 4},"
        " 'fidelities': [{'name': 'lab', 'cost': 1},"
        " {'name': 'sim', 'cost': 0.05, 'simulator': 'instruments.virtual_world:screen'}]})\n"
        "print(tools.budget.cost_of(spec, 'sim'), tools.budget.advise(spec, []).verdict)\n"
        "print(sorted(m for m in ('torch', 'botorch', 'gpytorch') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines() == ["0.05 too_few_pairs", "[]"]
