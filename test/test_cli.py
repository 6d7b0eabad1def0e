"""The `lgtc` command line: sim summaries (table and JSON), outputs, clear errors, bench rows."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lgtc_ros.cli import main


def test_sim_json_is_one_object(capsys):
    assert main(["sim", "--episodes", "2", "--policy", "random", "--seed", "3", "--json", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["episodes"] == 2 and summary["policy"] == "random"
    for key in ("demand_satisfied_pct", "collisions_mean", "return_mean", "return_collision"):
        assert key in summary


def test_sim_writes_png_csv_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sim", "--episodes", "1", "--out", str(out), "--quiet"]) == 0
    assert "demand_satisfied_pct" in capsys.readouterr().out
    assert (out / "trajectory.png").stat().st_size > 10_000
    rows = (out / "steps_episode0.csv").read_text().splitlines()  # the name says what it holds
    assert len(rows) == 1 + 200 * 10 and rows[0].startswith("episode,step,time_s,agent")
    assert {r.split(",")[0] for r in rows[1:]} == {"0"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "paper_10x4" and summary["threads"] == 1
    assert "episode 0" in summary["steps_csv"]


def test_bad_scenario_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nn_agents: 2\nn_consumers: 1\nresources: [{name: a, kind: persistent}]\nv_max: -1\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: field 'v_max' = -1.0: must be > 0"):
        main(["sim", "--scenario", str(bad), "--quiet"])
    with pytest.raises(SystemExit, match="unknown policy"):
        main(["sim", "--policy", "genius", "--quiet"])


def test_bench_sim_rows(tmp_path, capsys):
    report = tmp_path / "BENCH.md"
    assert main(["bench", "--only", "sim", "--batches", "1", "4", "--peers", "--json", "--quiet",  # no VMAS rows
                 "--report", str(report)]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["envs"] for r in rows] == [1, 4]
    assert all(r["agent_steps_per_s"] > 0 and r["loop_agent_steps_per_s"] > 0 for r in rows)
    text = report.read_text()
    assert "lgtc bench" in text and "machine:" in text and "| envs |" in text


def test_bench_refuses_a_runtime_mission_too_short_for_a_p99():
    with pytest.raises(SystemExit, match="--runtime-ticks 20: must be >= 100"):
        main(["bench", "--only", "runtime", "--runtime-ticks", "20", "--quiet"])


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "lgtc_ros.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "sim" in proc.stdout and "bench" in proc.stdout


def test_demo_flies_the_shipped_policy_through_the_runtime_and_replays_it(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "models/lgtc_paper_10x4.pt" in out and "per-drone runtime" in out
    demo = tmp_path / "demo"
    assert (demo / "bag" / "metadata.yaml").is_file() and list((demo / "bag").glob("*.mcap"))
    assert (demo / "replay" / "report.png").stat().st_size > 20_000
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["collisions_total"] == 0 and summary["cbf_fallbacks"] == 0


def test_record_then_replay_cli(tmp_path, capsys):
    bag = tmp_path / "bag"
    assert main(["sim", "--policy", "models/lgtc_paper_10x4.pt", "--record", str(bag), "--episodes", "1",
                 "--cbf", "off", "--json", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["replay", str(bag), "--policy", "models/lgtc_paper_10x4.pt", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["open_loop"]["choice_mismatch"] == 0  # same model, ideal radio: identical decisions
    with pytest.raises(SystemExit, match="exists"):
        main(["sim", "--policy", "expert", "--record", str(bag), "--quiet"])
    with pytest.raises(SystemExit, match="not a rosbag2|metadata|bag"):
        main(["replay", str(tmp_path)])


def test_model_for_another_consumer_count_needs_the_flag(tmp_path):
    with pytest.raises(SystemExit, match="--any-consumers"):
        main(["sim", "--scenario", "scale_50x10", "--policy", "models/lgtc_paper_10x4.pt", "--quiet"])


def test_compare_curves(tmp_path, capsys):
    log = "models/lgtc_paper_10x4_train_log.csv"
    assert main(["compare", f"A={log}", log, "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 10_000
