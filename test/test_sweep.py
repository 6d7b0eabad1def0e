"""Fig. 4 sweeps: mission variants stay valid at any team size, every policy flies the same
episodes, the figure and tables are written, bad input fails before any work."""
from __future__ import annotations

import pytest

from lgtc_ros.cli import main
from lgtc_ros.evaluate import RandomPolicy
from lgtc_ros.scenario import ScenarioError, load_scenario, resolve_scenario
from lgtc_ros.sweep import markdown, plot, sweep, variant
from lgtc_ros.world import World

PAPER = load_scenario(resolve_scenario("paper_10x4"))


def test_variants_cap_supply_at_any_team_size():
    big = variant(PAPER, 50, 4)
    assert (big.n_agents, big.n_consumers, big.name) == (50, 4, "paper_10x4_n50_m4") and big.random.cap_supply
    w = World(big, n_envs=8, seed=0, solve_assignment=False)
    assert (w.supply.sum((1, 2)) <= w.need.sum((1, 2)) + 1e-5).all()   # supply never exceeds demand
    with pytest.raises(ScenarioError, match="n_consumers"):
        variant(PAPER, 3, 4)


def test_sweep_rows_same_episodes_for_every_policy_and_a_figure(tmp_path):
    calls = []

    def make(s):
        calls.append((s.n_agents, s.n_consumers))
        return RandomPolicy(0)

    rows = sweep(PAPER, {"a": make, "b": make}, agents=[5, 8], consumers=[2], episodes=2, seed=3)
    assert [(r["axis"], r["policy"], r["agents"], r["consumers"]) for r in rows] == [
        ("agents", "a", 5, 4), ("agents", "b", 5, 4), ("agents", "a", 8, 4), ("agents", "b", 8, 4),
        ("consumers", "a", 10, 2), ("consumers", "b", 10, 2)]
    same = {(r["agents"], r["consumers"]): r["return_mean"] for r in rows if r["policy"] == "a"}
    assert all(r["return_mean"] == same[r["agents"], r["consumers"]] for r in rows if r["policy"] == "b")
    assert plot(rows, tmp_path / "fig4.png").stat().st_size > 10_000
    assert markdown(rows).count("\n") == len(rows) + 2


def test_sweep_cli_writes_outputs_and_rejects_unknown_policies(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "--policy", "random", "--agents", "5", "--consumers", "2", "--episodes", "1",
                 "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} == {"sweep.csv", "sweep.md", "fig4.png"}
    with pytest.raises(SystemExit, match="unknown policy"):
        main(["sweep", "--policy", "greedy", "--out", str(tmp_path / "x"), "--quiet"])
