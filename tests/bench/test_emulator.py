from __future__ import annotations

import json
import math

import numpy as np
import pytest
from botorch.models.transforms.input import ChainedInputTransform, Warp
from typer.testing import CliRunner

from athanor.cli import app
from athanor.errors import AthanorError
from bench.emulator import (
    METHOD_OPTIONS,
    METHODS,
    AthanorDesigner,
    AxSpace,
    Emulator,
    Scale,
    build_spec,
    default_methods,
    initial_points,
    run_benchmark,
    run_method,
    safe_names,
    sum_rule_total,
)
from bench.pool import load_pool
from tools.optimiser import OptimiserOptions

PEAK = (1.3, 14.0)


def smooth(x):
    """A smooth peak at PEAK over a in [0, 2] and b in [10, 20]."""
    a, b = x[:, 0], x[:, 1]
    return 5.0 + 3.0 * np.exp(-(((a - PEAK[0]) / 0.5) ** 2) - ((b - PEAK[1]) / 3.0) ** 2)


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(f"{v:.6g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def smooth_csv(tmp_path_factory):
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.uniform(0, 2, 60), rng.uniform(10, 20, 60)])
    rows = np.column_stack([x, smooth(x)])
    return write_csv(
        tmp_path_factory.mktemp("smooth") / "data.csv", ["a (%)", "b [degC]", "signal (a.u.)"], rows
    )


@pytest.fixture(scope="module")
def smooth_emulator(smooth_csv):
    return Emulator(load_pool(smooth_csv, "max"))


@pytest.fixture(scope="module")
def mixture_emulator(tmp_path_factory):
    """Three components summing to 100 (to within 0.2, as rounded lab data do); minimised."""
    rng = np.random.default_rng(5)
    x = rng.dirichlet([2.0, 2.0, 2.0], 40) * 100
    x[:, 2] += rng.uniform(-0.2, 0.2, 40)
    y = ((x[:, 0] - 50) / 20) ** 2 + ((x[:, 1] - 30) / 20) ** 2
    path = tmp_path_factory.mktemp("mixture") / "data.csv"
    write_csv(path, ["P3HT content (%)", "CNT content (%)", "D1 (%)", "loss"], np.column_stack([x, y]))
    return Emulator(load_pool(path, "min"))


# ------------------------------------------------------------------------------------------ the space
def test_headers_become_valid_distinct_names():
    names = safe_names(["P3HT content (%)", "Qtot(uL/min)", "1st step", "a (%)", "a [mol]", "(%)"])
    assert list(names.values()) == ["P3HT_content", "Qtot", "x2_1st_step", "a", "a_2", "x5"]
    assert safe_names(["loss"], taken=["loss"]) == {"loss": "loss_2"}


def test_a_sum_rule_is_found_only_when_every_row_adds_up_to_1_or_100():
    rows = np.array([[40.0, 60.0], [20.0, 80.3], [99.6, 0.0]])  # within 0.5 % of 100
    assert sum_rule_total(rows) == 100.0
    assert sum_rule_total(rows / 100) == 1.0
    assert sum_rule_total(np.array([[40.0, 60.0], [20.0, 81.0]])) is None  # 1 % off
    assert sum_rule_total(np.array([[0.2, 0.3], [0.1, 0.4]])) is None  # same total, but 0.5


def test_smooth_data_give_a_box_without_sum_rule_and_mapped_names(smooth_emulator):
    spec, pool = smooth_emulator.spec, smooth_emulator.pool
    assert spec.sum_rule is None
    assert smooth_emulator.names == {"a (%)": "a", "b [degC]": "b", "signal (a.u.)": "signal"}
    assert [(c.name, c.lower, c.upper) for c in spec.components] == [
        ("a", pool.x[:, 0].min(), pool.x[:, 0].max()),
        ("b", pool.x[:, 1].min(), pool.x[:, 1].max()),
    ]
    assert spec.primary_objective.name == "signal" and spec.primary_objective.direction == "maximise"


def test_negative_columns_are_refused_naming_them(tmp_path):
    path = write_csv(tmp_path / "neg.csv", ["t", "u", "y"], [[-1, 1, 1], [0, 2, 2], [1, 3, 4]])
    with pytest.raises(AthanorError, match=r"'t'.*negative"):
        build_spec(load_pool(path))


# ------------------------------------------------------------------------------------------ the emulator
def test_the_emulator_reproduces_a_known_smooth_function(smooth_emulator):
    assert smooth_emulator.cv_r2 > 0.9
    rng = np.random.default_rng(11)
    rows = smooth_emulator.pool.x
    near = rows + rng.normal(0.0, 0.01, rows.shape) * (rows.max(axis=0) - rows.min(axis=0))
    error = np.abs(smooth_emulator(near) - smooth(near))
    assert float(np.mean(error)) < 0.1 * 3.0  # a tenth of the peak's height
    assert float(smooth_emulator.trust(smooth_emulator._unit(rows)).min()) == pytest.approx(1.0)


def test_far_from_the_data_the_truth_falls_back_to_the_datas_median(tmp_path):
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.uniform(0, 1, 80), rng.uniform(0, 1, 80)])
    x = np.vstack([x[(x[:, 0] < 0.5) | (x[:, 1] < 0.5)], [[1.0, 1.0]]])  # an empty corner, its tip held
    y = 10.0 * x[:, 0] + 10.0 * x[:, 1]  # the network would extrapolate a rise into the corner
    emulator = Emulator(load_pool(write_csv(tmp_path / "hole.csv", ["a", "b", "y"], np.column_stack([x, y]))))
    hole = np.array([[0.8, 0.8]])
    floor = float(np.median(emulator.pool.y))
    assert float(emulator.trust(emulator._unit(hole))[0]) < 0.05
    assert abs(float(emulator(hole)[0]) - floor) < 0.05 * float(np.ptp(emulator.pool.y))
    corner = emulator.pool.x[-1:]
    assert float(emulator(corner)[0]) > floor + 5.0  # on a row, the network's value stands


def test_score_is_one_at_the_optimum_and_near_zero_at_a_typical_point(smooth_emulator):
    scale = smooth_emulator.scale(samples=4000)
    best = smooth_emulator.values([scale.x_best])[0]
    assert best == pytest.approx(scale.f_best)
    assert scale.score([scale.f_best])[0] == pytest.approx(1.0)
    assert scale.score([scale.f_median])[0] == pytest.approx(0.0)
    # the emulator's optimum is the known peak, and no data row or fresh point beats it
    assert abs(scale.x_best["a"] - PEAK[0]) < 0.2 and abs(scale.x_best["b"] - PEAK[1]) < 1.5
    rng = np.random.default_rng(12)
    fresh = np.column_stack([rng.uniform(0, 2, 5000), rng.uniform(10, 20, 5000)])
    values = smooth_emulator(fresh)
    assert values.max() <= scale.f_best + 1e-9
    assert smooth_emulator(smooth_emulator.pool.x).max() <= scale.f_best + 1e-9
    # the median of the feasible space: about half of fresh points score below 0
    assert 0.4 < float(np.mean(values < scale.f_median)) < 0.6


def test_the_score_tracks_the_best_so_far_in_either_direction():
    up = Scale(f_best=10.0, f_median=2.0, x_best={}, direction="max")
    assert up.score([2.0, 6.0, 4.0, 10.0]).tolist() == [0.0, 0.5, 0.5, 1.0]
    down = Scale(f_best=1.0, f_median=3.0, x_best={}, direction="min")
    assert down.score([5.0, 2.0, 4.0, 1.0]).tolist() == [-1.0, 0.5, 0.5, 1.0]


def test_noise_is_the_same_for_every_method_and_sized_by_the_option(smooth_csv):
    noisy = Emulator(load_pool(smooth_csv, "max"), noise=0.2)
    runs = [run_method(noisy, method, 1, 3) for method in ("random", "athanor")]
    noise = [np.subtract(r.readings, r.values) for r in runs]
    np.testing.assert_allclose(noise[0], noise[1])
    assert np.all(noise[0] != 0) and noisy.noise_sd == pytest.approx(0.2 * np.std(noisy.pool.y))
    with pytest.raises(AthanorError, match="noise"):
        Emulator(noisy.pool, noise=-1)


# ------------------------------------------------------------------------------------------ runs
def test_every_method_starts_from_the_same_points_for_a_seed(smooth_emulator):
    runs = {m: run_method(smooth_emulator, m, 0, 4) for m in ("random", "athanor")}
    assert (
        runs["random"].compositions[:2]
        == runs["athanor"].compositions[:2]
        == initial_points(smooth_emulator.spec, 0)
    )
    assert initial_points(smooth_emulator.spec, 1) != initial_points(smooth_emulator.spec, 0)
    assert runs["random"].compositions[2:] != runs["athanor"].compositions[2:]
    assert runs["athanor"].fallbacks == 0 and len(runs["athanor"].seconds) == 2
    assert all(len(r.values) == 4 for r in runs.values())


def recording(calls):
    """The ``athanor`` designer, noting (readings told, count asked, pending) at each ask."""

    class Recording(AthanorDesigner):
        told = 0

        def tell(self, composition, value):
            super().tell(composition, value)
            self.told += 1

        def ask(self, count=1, pending=()):
            calls.append((self.told, count, len(pending)))
            return super().ask(count, pending)

    return {"athanor": Recording}


def test_a_batch_is_proposed_jointly_on_every_reading_so_far_and_the_run_ends_on_the_budget(smooth_emulator):
    calls = []
    run = run_method(smooth_emulator, "athanor", 0, 7, recording(calls), batch=2)
    # 2 initial points, then batches of 2, 2 and the last 1; each sees every reading before it
    assert [call[:2] for call in calls] == [(2, 2), (4, 2), (6, 1)]
    assert len(run.values) == 7 and len(run.seconds) == 3 and run.fallbacks == 0
    assert all(smooth_emulator.spec.violations(c) == [] for c in run.compositions)
    first = run.compositions[2:4]
    assert first[0] != first[1]  # a joint batch, not one point twice
    shuffled = run_method(smooth_emulator, "random", 0, 7, batch=3)
    assert len(shuffled.values) == 7 and len(shuffled.seconds) == 2
    assert shuffled.compositions == run_method(smooth_emulator, "random", 0, 7).compositions


def test_async_runs_keep_the_instruments_full_and_pass_the_running_ones_as_pending(smooth_emulator):
    calls = []
    run = run_method(smooth_emulator, "athanor", 0, 8, recording(calls), batch=3, mode="async")
    # 3 asked together after the 2 initial points; then one each time the oldest finishes, beside the
    # 2 still running, until 8 are made or running
    assert calls == [(2, 3, 0), (3, 1, 2), (4, 1, 2), (5, 1, 2)]
    assert len(run.values) == 8 and len(run.seconds) == 4
    assert all(smooth_emulator.spec.violations(c) == [] for c in run.compositions)
    # the first of the batch was measured first, and no composition was asked for twice
    assert len({tuple(sorted(c.items())) for c in run.compositions}) == 8


def test_a_designer_that_returns_a_short_batch_is_an_error(smooth_emulator):
    class Short:
        def __init__(self, spec, seed, budget):
            self._spec = spec

        def tell(self, composition, value):
            pass

        def ask(self, count=1, pending=()):
            return initial_points(self._spec, 5)[:1]

    with pytest.raises(RuntimeError, match="asked for 2 compositions, got 1"):
        run_method(smooth_emulator, "short", 0, 6, factories={"short": Short}, batch=2)


class Stop(Exception):
    pass


def with_maximiser(method, maximiser):
    """Factories running ``method``'s designer with its options and ``maximiser`` as ``optimize_acqf``."""
    options = METHOD_OPTIONS[method].model_copy(update={"optimize_acqf": maximiser})
    return {method: lambda spec, seed, budget: AthanorDesigner(spec, seed, budget, options=options)}


def test_the_warped_gp_is_used_in_its_run_and_only_there(smooth_emulator):
    seen = []

    def fail(acqf, *args, **kwargs):
        transform = acqf.model.input_transform
        warped = isinstance(transform, ChainedInputTransform) and any(
            isinstance(t, Warp) for t in transform.values()
        )
        seen.append(warped)
        raise Stop

    for method in ("athanor-warp", "athanor"):
        with pytest.raises(Stop):
            run_method(smooth_emulator, method, 0, 4, with_maximiser(method, fail))
    assert seen == [True, False]
    # the methods run with those options, and the plain one with the defaults
    assert METHODS["athanor-warp"].keywords["options"] == OptimiserOptions(warp=True)
    assert METHODS["athanor"].keywords["options"] == OptimiserOptions()


def test_the_ucb_methods_maximise_the_ucb_and_the_others_qlognei(smooth_emulator):
    original_optimize = OptimiserOptions().optimize_acqf
    used = []

    def record(acqf, *args, **kwargs):
        beta = getattr(acqf, "beta_prime", None)  # sqrt(beta pi / 2) in BoTorch's qUCB
        used.append((type(acqf).__name__, None if beta is None else round(float(beta), 6)))
        return original_optimize(acqf, *args, **kwargs)

    for method in ("athanor-ucb", "athanor-warp-ucb", "athanor"):
        used.clear()
        run_method(smooth_emulator, method, 0, 4, with_maximiser(method, record))
        kinds = set(used)
        if method == "athanor":
            assert kinds == {("qLogNoisyExpectedImprovement", None)}
        else:
            assert kinds == {("qUpperConfidenceBound", round(math.sqrt(4.0 * math.pi / 2), 6))}
        assert len(used) == 2  # one model-based proposal per experiment after the 2 initial points
    for method in ("athanor-ucb", "athanor-warp-ucb"):
        assert METHODS[method].keywords["options"] == METHOD_OPTIONS[method]


def test_a_mixture_gets_the_sum_rule_and_every_proposal_is_feasible(mixture_emulator):
    spec = mixture_emulator.spec
    assert spec.sum_rule is not None and spec.sum_rule.total == 100.0
    assert spec.component_names == ["P3HT_content", "CNT_content", "D1"]
    assert all(c.upper <= 100.0 for c in spec.components)
    runs = [
        run_method(mixture_emulator, m, s, 5) for m in ("random", "athanor", "athanor-warp") for s in (0, 1)
    ]
    for run in runs:
        for composition in run.compositions:
            assert spec.violations(composition) == []
            assert sum(composition.values()) == pytest.approx(100.0)
    assert sum(r.fallbacks for r in runs) == 0


def test_ax_sees_the_sum_rule_as_a_substitution_with_two_constraints(mixture_emulator):
    spec = mixture_emulator.spec
    ax = AxSpace.of(spec)
    last = spec.components[-1]
    assert list(ax.bounds) == ["P3HT_content", "CNT_content"] and ax.last == "D1"
    assert ax.constraints == [
        f"P3HT_content + CNT_content <= {100.0 - last.lower!r}",
        f"P3HT_content + CNT_content >= {100.0 - last.upper!r}",
    ]
    for composition in initial_points(spec, 3):
        back = ax.composition(ax.parameters(composition))
        assert back == pytest.approx(composition) and spec.violations(back) == []
    # on the constraint the last component sits on its bound; past it, it leaves its range
    free = {"P3HT_content": 60.0, "CNT_content": 100.0 - last.lower - 60.0}
    assert spec.violations(ax.composition(free)) == []
    assert spec.violations(ax.composition({**free, "CNT_content": free["CNT_content"] + 1.0})) != []


def test_ax_is_listed_only_when_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ax" else real(name, *a)
    )
    assert default_methods() == ["random", "athanor", "athanor-warp", "athanor-ucb", "athanor-warp-ucb"]
    with pytest.raises(AthanorError, match="make bench-setup"):
        run_benchmark(None, None, seeds=1, budget=4, methods=["ax"])


def test_bad_arguments_are_refused_naming_the_option(smooth_emulator):
    scale = Scale(1.0, 0.0, {}, "max")
    for kwargs, option in (
        ({"methods": ["random", "magic"]}, "--methods"),
        ({"methods": []}, "--methods"),
        ({"seeds": 0}, "--seeds"),
        ({"budget": 2}, "--budget"),
        ({"batch": 0}, "--batch"),
        ({"batch": 3}, "--batch"),  # 4 experiments leave 2 after the initial points
        ({"mode": "async"}, "--mode async needs --batch 2"),
        ({"mode": "flow", "batch": 2}, "--mode 'flow'"),
    ):
        with pytest.raises(AthanorError, match=option):
            run_benchmark(
                smooth_emulator, scale, **({"seeds": 1, "budget": 4, "methods": ["random"]} | kwargs)
            )


# ------------------------------------------------------------------------------------------ the CLI
def test_the_cli_runs_end_to_end_and_writes_the_documented_json(smooth_csv, tmp_path):
    out = tmp_path / "designer.json"
    args = ["bench", "designer", "--dataset", str(smooth_csv), "--direction", "max", "--seeds", "2"]
    result = CliRunner().invoke(
        app, [*args, "--budget", "6", "--methods", "random,athanor", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc) >= {"dataset", "emulator", "seeds", "budget", "methods", "space"}
    assert (doc["seeds"], doc["budget"], list(doc["methods"])) == (2, 6, ["random", "athanor"])
    assert doc["batch"] == 1
    assert set(doc["emulator"]) >= {"cv_r2", "f_best", "f_median"} and doc["emulator"]["cv_r2"] > 0.9
    athanor = doc["methods"]["athanor"]
    assert set(athanor) >= {"score_at", "exp_to_90", "exp_to_95", "seconds_per_proposal", "scores"}
    assert athanor["score_at"]["10"] is None and athanor["score_at"]["30"] is None
    assert set(athanor["score_at"]["6"]) == {"median", "p5", "p95"}
    assert len(athanor["scores"]) == 2 and all(len(s) == 6 for s in athanor["scores"])
    assert athanor["score_at"]["6"]["median"] == pytest.approx(
        np.median([s[-1] for s in athanor["scores"]]), abs=1e-6
    )
    reached = [next((i + 1 for i, v in enumerate(s) if v >= 0.9), 7) for s in athanor["scores"]]
    assert athanor["exp_to_90"]["median"] == np.median(reached)
    assert (
        athanor["seconds_per_proposal"] > 0
        and doc["methods"]["random"]["scores"][0][:2] == athanor["scores"][0][:2]
    )
    assert "CV R²" in result.output and "@6" in result.output and "@10" not in result.output


def test_the_cli_refuses_bad_input_with_exit_2_and_a_message(smooth_csv, tmp_path):
    base = ["bench", "designer", "--seeds", "1", "--budget", "4", "--methods", "random"]
    cases = (
        (["--dataset", str(smooth_csv), "--direction", "up"], "--direction 'up'"),
        (["--dataset", str(tmp_path / "missing.csv")], "does not exist"),
        (["--dataset", str(smooth_csv), "--budget", "2"], "--budget"),
        (["--dataset", str(smooth_csv), "--methods", "random,magic"], "magic"),
        (["--dataset", str(smooth_csv), "--batch", "0"], "--batch is 0"),
    )
    for extra, message in cases:
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())  # the console wraps long lines
        assert message in output and "Traceback" not in output
