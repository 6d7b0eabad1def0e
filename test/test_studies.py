"""Studies for `lgtc reproduce ablations`: the discharge event over seeds (what varies, that it
measures what `lgtc sim --record` + replay measure), its table and figure, and the range of the
LGTC consensus state (read without changing the flight; refused for a model without one)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from lgtc_ros import studies
from lgtc_ros.evaluate import rollout
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.world import World

ROOT = Path(__file__).resolve().parent.parent
DISCHARGE_MODEL = ROOT / "models" / "lgtc_discharge_5x3.pt"
PAPER_MODEL = ROOT / "models" / "lgtc_paper_10x4.pt"
DISCHARGE = load_scenario(resolve_scenario("discharge_5x3"))
SHORT_S = 54.0  # 4 s after the 50 s event (the expert re-serves in ~2 s): ~2-3 s of runtime per episode

KEYS = {"seed", "policy", "reallocation_s", "decision_s", "orphaned", "discharged", "uncovered_before",
        "uncovered_end", "collisions", "min_distance", "event_time_s", "episode_s", "start_pos"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def drawn_starts(seed: int) -> list:
    """The start positions the simulator draws for `seed` once the scenario's are left out."""
    return np.round(World(studies.seeded_starts(DISCHARGE), n_envs=1, seed=seed, solve_assignment=False)
                    .pos[0].numpy().astype(np.float64), 4).tolist()


def test_expert_rows_vary_only_the_starts_and_reallocate():
    rows = studies.discharge_distribution(DISCHARGE, "expert", [0, 1], episode_s=SHORT_S)
    assert [(r["policy"], r["seed"]) for r in rows] == [("expert", 0), ("expert", 1)]
    for r in rows:
        assert set(r) == KEYS and r["episode_s"] == pytest.approx(SHORT_S) and r["event_time_s"] == 50.0
        assert r["start_pos"] == drawn_starts(r["seed"])      # the seed's draw, not the file's fixed line
        assert r["orphaned"] and r["discharged"] in range(DISCHARGE.n_agents)
        assert 0 < r["reallocation_s"] < SHORT_S - 50.0         # another drone took the consumer over
        assert r["decision_s"] is None                          # centralized: no per-drone choice recorded
        assert r["uncovered_end"] > 0 and r["collisions"] == 0  # the landed drone's battery is lost
    fixed = [list(p) for p in DISCHARGE.initial.agent_pos]
    assert rows[0]["start_pos"] != rows[1]["start_pos"] and fixed not in (rows[0]["start_pos"], rows[1]["start_pos"])


def test_learned_policy_flies_the_same_missions_per_drone():
    seen = []

    def factory(scenario):  # a factory, as `lgtc reproduce` may pass one; a LearnedPolicy flies per drone
        seen.append(scenario.episode_steps)
        return LearnedPolicy.load(DISCHARGE_MODEL, scenario)

    done = []
    rows = studies.discharge_distribution("discharge_5x3", {"lgtc": factory}, [0, 1], episode_s=SHORT_S,
                                          progress=lambda k, total, row: done.append((k, total, row["seed"])))
    assert seen == [round(SHORT_S / DISCHARGE.dt)] and done == [(1, 2, 0), (2, 2, 1)]
    for r in rows:
        assert set(r) == KEYS and r["policy"] == "lgtc" and r["start_pos"] == drawn_starts(r["seed"])
        assert r["orphaned"] and r["discharged"] in range(DISCHARGE.n_agents)
        # per-drone choices are recorded: a time or NaN (not within 4 s), never None
        assert isinstance(r["decision_s"], float) and isinstance(r["reallocation_s"], float)
        assert r["collisions"] == 0 and r["min_distance"] >= DISCHARGE.safety_radius  # the CBF flies too


def test_rows_match_lgtc_sim_record_and_replay(tmp_path):
    """The measurement is the existing one: `lgtc sim --record` on the same mission (the file
    without fixed starts, same seed), its bag through `replay.event_outcomes`."""
    from lgtc_ros.bags import read_bag
    from lgtc_ros.cli import main
    from lgtc_ros.replay import event_outcomes

    raw = yaml.safe_load(Path(DISCHARGE.source).read_text())
    del raw["initial"]["agent_pos"]
    # the same mission with the event at 20 s (both sides fly this file): a shorter test
    raw["events"][0]["time_s"], raw["episode_steps"] = 20.0, round(24.0 / raw["dt"])
    mission = tmp_path / "discharge_seeded.yaml"
    mission.write_text(yaml.safe_dump(raw))
    assert main(["sim", "--scenario", str(mission), "--policy", "expert", "--seed", "3", "--episodes", "1",
                 "--record", str(tmp_path / "bag"), "--quiet", "--json"]) == 0
    (recorded,) = event_outcomes(read_bag(tmp_path / "bag"))
    (row,) = studies.discharge_distribution(mission, {"expert": "expert"}, [3])
    assert row["orphaned"] == recorded.orphaned and row["orphaned"] and math.isfinite(row["reallocation_s"])
    assert row["reallocation_s"] == pytest.approx(recorded.reallocation_s, abs=1e-9)
    assert row["uncovered_end"] == pytest.approx(recorded.uncovered_end, abs=1e-9)


def test_an_episode_that_ends_before_the_event_is_refused():
    with pytest.raises(ValueError, match="before the scenario's last event"):
        studies.discharge_distribution(DISCHARGE, "expert", [0], episode_s=40.0)


def _row(policy, seed, realloc, orphaned=(0,)):
    return {"seed": seed, "policy": policy, "reallocation_s": realloc, "decision_s": None, "orphaned": list(orphaned),
            "discharged": 1 if orphaned else None, "uncovered_before": 0.0, "uncovered_end": 0.4, "collisions": seed % 2,
            "min_distance": 0.2, "event_time_s": 50.0, "episode_s": 120.0, "start_pos": []}


def test_table_and_figure_count_never_re_served_apart(tmp_path):
    rows = ([_row("a", k, v) for k, v in enumerate([1.0, 2.0, 3.0, 4.0, math.nan])]
            + [_row("a", 5, math.nan, orphaned=())]            # the event hit nobody: neither served nor never
            + [_row("b", k, math.nan) for k in range(3)])
    stats = studies.discharge_stats(rows)
    assert stats["a"] == {"n": 6, "orphaned": 5, "never": 1, "median": 2.5, "q1": 1.75, "q3": 3.25, "mean": 2.5,
                          "max": 4.0, "collisions": 3}
    assert stats["b"]["never"] == 3 and math.isnan(stats["b"]["median"])
    table = studies.discharge_markdown(rows)
    assert "| a | 6 | 5 | 2.5 | 1.8-3.2 | 2.5 | 4.0 | 1 | 3 |" in table
    assert "| b | 3 | 3 | n/a | n/a-n/a | n/a | n/a | 3 | 1 |" in table
    path = studies.discharge_plot(rows, tmp_path / "fig" / "discharge.png")
    assert path.stat().st_size > 10_000


def test_state_range_reads_the_state_without_changing_the_flight():
    scenario = load_scenario(resolve_scenario("paper_10x4"))
    out = studies.state_range(PAPER_MODEL, scenario, episodes=1, seed=5)
    assert out["entries"] == scenario.episode_steps * scenario.n_agents * out["state_dim"]  # no one lands here
    assert 0 < out["max_abs_x"] < math.inf and 0 <= out["frac_abs_gt_1"] <= 1
    assert 0 < out["mean_abs_x"] <= out["max_abs_x"] == max(out["max_abs_x_per_episode"])
    plain, _ = rollout(scenario, LearnedPolicy.load(PAPER_MODEL, scenario), 1, seed=5)
    assert out["return_mean"] == pytest.approx(float(plain.returns.mean()), abs=1e-9)


def test_state_range_refuses_a_model_without_consensus_state():
    with pytest.raises(ValueError, match="no consensus state"):
        studies.state_range(ROOT / "models" / "ippo_paper_10x4.pt", "paper_10x4", episodes=1, seed=0)
