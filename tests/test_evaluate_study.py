"""End to end: a study on the simulated backend with a hardware model fitted to that backend's latency law.

The training records come from ``annette.backends.simulated.simulate`` on NAS-Bench-201 networks other than
the evaluated ones (no timing); the study then really measures the evaluated networks on the simulated
backend (busy-waiting for the modelled time) through the bench protocol. The simulated law is a roofline
per executed node, so a fitted roofline must recover it: estimates within a few percent of measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annette.backends.simulated import SimulatedBackend, simulate
from annette.evaluate import metrics as M
from annette.evaluate.report import write_report
from annette.evaluate.study import MEASUREMENTS_FILE, Progress, StudySettings, nb201_specs, run_study
from annette.records import BenchRecord, Measurement, NodeProfile
from annette.spaces import nb201

SCALE = 0.2  # simulated networks run 0.2-5 ms
SETTINGS = StudySettings(backend="simulated", rounds=2, seed=1, backend_options={"scale": SCALE})


def simulated_ms(spec: str) -> float:
    return sum(n.time_ms for n in simulate(nb201.graph_from_arch(spec.split(":", 1)[1]), scale=SCALE))


@pytest.fixture(scope="module")
def hw_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from annette.fit import fit_records

    target = SimulatedBackend(scale=SCALE).describe()
    records = []
    for i, arch in enumerate(nb201.sample_archs(8, seed=101)):
        graph = nb201.graph_from_arch(arch)
        nodes = simulate(graph, scale=SCALE)
        total = sum(n.time_ms for n in nodes)
        meas = Measurement((total,) * 5, 1, total, total, total)
        profile = tuple(NodeProfile(n.name, n.op_type, n.time_ms, n.covers) for n in nodes)
        records.append(BenchRecord(f"train{i}", "network", arch, {}, target, "ok", graph, meas, profile))
    hw, _ = fit_records(records, kinds=("roofline",), use_networks=True, name="sim-nb201")
    return hw.save(tmp_path_factory.mktemp("hw") / "sim.json")


def test_study_recovers_the_simulated_target_and_resumes(hw_path: Path, tmp_path: Path) -> None:
    specs = nb201_specs(3, seed=7)
    seen: list[Progress] = []
    result = run_study(specs, hw_path, tmp_path, SETTINGS, title="sim", progress=seen.append)
    assert not result.failed and result.kinds == ("roofline",)
    assert [n.spec for n in result.networks] == specs
    measure_steps = [p for p in seen if p.phase == "measure"]
    assert [p.done for p in measure_steps] == list(range(1, 7)) and measure_steps[-1].total == 6
    # Interleaved rounds: every network once in round 0 before any in round 1.
    assert [p.round for p in measure_steps] == [0, 0, 0, 1, 1, 1]
    for net in result.networks:
        truth = simulated_ms(net.spec)
        # Busy-waiting never runs faster than the model; the label is the minimum over both rounds.
        assert truth * 0.999 <= net.measured_ms == pytest.approx(min(net.rounds_ms), rel=1e-12)
        assert net.measured_ms < truth * 1.10
        assert net.estimated_ms["roofline"] == pytest.approx(truth, rel=0.02)
        assert net.profiled_by_type["Conv"] > 0 and net.estimated_by_type["roofline"]["Conv"] > 0
    m = result.overall["roofline"]
    assert m == M.compute_metrics(
        [n.measured_ms for n in result.networks], [n.estimated_ms["roofline"] for n in result.networks]
    )
    assert m.mape_pct < 10 and m.within10_pct == 100.0
    assert result.noise_floor is not None and result.noise_floor.n == 3
    # The measured graph's profile nodes link to its layers: by-type errors exist for Conv.
    assert result.by_type["roofline"]["Conv"]["networks"] == 3

    log_before = (tmp_path / MEASUREMENTS_FILE).read_text()
    assert len(log_before.splitlines()) == 6
    again = run_study(specs, hw_path, tmp_path, SETTINGS, title="sim")
    assert (tmp_path / MEASUREMENTS_FILE).read_text() == log_before  # nothing re-measured
    assert [n.measured_ms for n in again.networks] == [n.measured_ms for n in result.networks]
    files = write_report(again, tmp_path)
    assert json.loads(files.results.read_text())["networks"][0]["spec"] == specs[0]
    # Other settings measure anew in the same directory.
    other = StudySettings(backend="simulated", rounds=1, backend_options={"scale": SCALE * 2})
    doubled = run_study(specs[:1], hw_path, tmp_path, other)
    assert len((tmp_path / MEASUREMENTS_FILE).read_text().splitlines()) == 7
    assert doubled.networks[0].measured_ms == pytest.approx(2 * simulated_ms(specs[0]), rel=0.1)


def test_failed_network_is_listed_and_left_out(hw_path: Path, tmp_path: Path) -> None:
    good = "nb201:|none~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|"
    result = run_study([good, str(tmp_path / "missing.onnx")], hw_path, tmp_path / "r", SETTINGS)
    assert [n.spec for n in result.networks] == [good]
    assert list(result.failed) == [str(tmp_path / "missing.onnx")]
    assert "ModelFileError" in result.failed[str(tmp_path / "missing.onnx")]
    assert result.overall["roofline"].n == 1


def test_cli_evaluate_json(hw_path: Path, tmp_path: Path) -> None:
    from annette.cli.main import app

    arch = "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    out = tmp_path / "rep"
    args = ["evaluate", "--hw", str(hw_path), "--backend", "simulated", "--backend-option", f"scale={SCALE}"]
    args += ["--models", f"nb201:{arch}", "--rounds", "2", "-o", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["settings"]["backend_options"] == {"scale": SCALE}
    assert data["networks"][0]["name"] == f"nb201-{nb201.parse_arch(arch).index:05d}"
    assert data["networks"][0]["estimated_ms"]["roofline"] == pytest.approx(
        simulated_ms(f"nb201:{arch}"), rel=0.02
    )
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    # Bad usage is one clear error line, exit code 1.
    res = CliRunner().invoke(
        app, ["evaluate", "--hw", str(hw_path), "--zoo", "torchvision", "--nb201", "3", "-o", "x"]
    )
    assert res.exit_code == 1 and "exactly one network set" in res.output
