"""`lgtc bench` marks every row against its target (met / missed / not comparable), in the printed
tables and BENCHMARKS.md, keeps the latest rows of every bench in docs/bench_last.json and writes the
README's "Measured here" table from them. Synthetic rows: no bench runs here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lgtc_ros import bench
from lgtc_ros.bench import MET, MISSED, NOT_COMPARABLE, verdict

ROOT = Path(__file__).resolve().parent.parent


def sim(envs=1024, agents=10, rate=3.6e6, speedup=100.0):
    return {"bench": "simulator", "envs": envs, "agents": agents, "threads": 2, "agent_steps_per_s": rate,
            "loop_agent_steps_per_s": rate / speedup, "speedup_vs_loop": speedup, "ms_per_step": 2.8}


def assignment(n=50, max_s=0.034, gap=0.0077, within=1.0):
    return {"bench": "assignment", "agents": n, "consumers": 10, "instances": 10, "fast_median_s": 0.028,
            "fast_max_s": max_s, "fast_max_gap": gap, "fast_within_1s_gap_1pct": within,
            "fast_solvers": ["scip-direct"], "ratio_cvxpy_over_fast_median": 14.7}


def policy(p99=0.2, executor="static runtime", neighbours=10):
    return {"bench": "policy_step", "model": "m.pt", "executor": executor, "threads": 1, "neighbours": neighbours,
            "consumers": 10, "p50_ms": 0.135, "p99_ms": p99}


def cbf(form="decentralized", agents=1, p99=0.07, scenario="swarm"):
    return {"bench": "cbf", "form": form, "scenario": scenario, "agents": agents, "neighbours": agents - 1 or 10,
            "calls": 100, "p50_ms": p99 / 2, "p99_ms": p99}


def runtime(agents=50, pct=8.0, tick_p99=30.0, rss=(375.0, 376.0)):
    return {"bench": "runtime", "scenario": f"scale_{agents}x10", "agents": agents, "cbf": "decentralized",
            "ticks": 200, "tick_p50_ms": tick_p99 * 0.8, "tick_p99_ms": tick_p99, "policy_p50_ms": 12.0,
            "cbf_p50_ms": 2.5, "runtime_only_p99_ms": pct / 2, "runtime_only_p99_pct_of_tick": pct,
            "rss_mb_tick20": rss[0], "rss_mb_end": rss[1]}


def graph(agents=10, processes="process", hz=20.0, too_close=0, rss=(300.0, 305.0)):
    return {"bench": "graph", "scenario": "x", "agents": agents, "agent_processes": processes, "cmd_hz_min": hz,
            "cmd_hz_median": hz, "pose_hz": 20.0, "closest_m": 0.38, "safety_m": 0.2, "ticks_too_close": too_close,
            "cpu_total_pct": 160.0, "cpu_agent_pct": 9.0, "rss_agent_mb_start": rss[0], "rss_agent_mb_end": rss[1]}


def collisions(cbf="decentralized", hits=0):
    return {"bench": "collisions", "scenario": "paper_10x4", "episodes": 100, "cbf": cbf, "collisions": hits}


def training(minutes=52.0):
    return {"bench": "training", "wall_min": minutes, "env_steps": 1024000, "env_steps_per_s": 329.0}


@pytest.mark.parametrize("row, expected", [
    (sim(), MET), (sim(rate=9e5), MISSED), (sim(speedup=40.0), MISSED), (sim(envs=64), NOT_COMPARABLE),
    (sim(agents=20), NOT_COMPARABLE),
    (assignment(), MET), (assignment(max_s=1.2), MISSED), (assignment(gap=0.02), MISSED),
    (assignment(within=0.9), MISSED), (assignment(n=30), NOT_COMPARABLE),
    (policy(), MET), (policy(p99=0.25), MISSED), (policy(executor="interpreter", p99=0.4), NOT_COMPARABLE),
    (policy(executor="interpreter (no static runtime)", p99=0.3), MISSED), (policy(neighbours=20), NOT_COMPARABLE),
    (cbf(), MET), (cbf(p99=0.1), MISSED), (cbf("centralized", 50, 1.9), MET), (cbf("centralized", 50, 2.37), MISSED),
    (cbf("centralized", 20, 5.0), NOT_COMPARABLE),
    (runtime(), MET), (runtime(pct=10.0), MISSED), (runtime(100, 50.0, 45.0), MET),
    (runtime(100, 50.0, 79.0), MISSED), (runtime(100, 50.0, 45.0, rss=(400.0, 480.0)), MISSED),
    (runtime(agents=30), NOT_COMPARABLE),
    (graph(), MET), (graph(agents=5, hz=18.0), MET), (graph(hz=17.9), MISSED), (graph(hz=22.5), MISSED),
    (graph(too_close=1), MISSED), (graph(50, "swarm", 19.1), MET), (graph(50, "swarm", rss=(300.0, 400.0)), MISSED),
    (graph(20, "process", 13.0), NOT_COMPARABLE),                  # reported, not judged
    (collisions(), MET), (collisions(hits=1), MISSED), (collisions("off", 121), NOT_COMPARABLE),
    (training(), MET), (training(130.0), MISSED),
    ({"bench": "something_new", "x": 1}, NOT_COMPARABLE),
])
def test_every_row_is_marked_against_its_target(row, expected):
    assert verdict(row) == expected


def test_rows_of_an_older_bench_lacking_a_field_are_not_comparable():
    old = runtime()
    del old["runtime_only_p99_pct_of_tick"]                        # the 2026-11-25 04:00 runtime rows
    assert verdict(old) == NOT_COMPARABLE
    old_graph = graph()
    del old_graph["rss_agent_mb_start"], old_graph["rss_agent_mb_end"]  # memory not measured: not judged on it
    assert verdict(old_graph) == MET


def test_every_target_names_a_bench_the_harness_has_and_every_kind_has_a_target():
    kinds = {t.bench for t in bench.TARGETS}
    assert kinds == set(bench.BENCH_ORDER)
    assert len({t.what for t in bench.TARGETS}) == len(bench.TARGETS)


def test_tables_carry_the_verdict_column_and_the_targets():
    rows = [sim(envs=1), sim(), policy(p99=0.3)]
    text = bench.format_rows(rows)
    assert "| envs | agents |" in text and text.count("| verdict |") == 2
    assert "| not comparable |" in text and "| met |" in text and "| missed |" in text
    assert "targets: simulator, B = 1024, N = 10: >= 1e6 agent-steps/s" in text
    assert bench.marks(rows).startswith("targets: 1 met, 1 missed, 1 not comparable (missed: policy_step")


def test_the_report_keeps_the_latest_rows_of_each_bench_and_rewrites_the_readme(tmp_path):
    docs = tmp_path / "docs"
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{bench.README_BEGIN}\nold\n{bench.README_END}\n\nafter\n")
    bench.append_report([sim(), policy(p99=0.3)], "lgtc bench", docs / "BENCHMARKS.md", "test machine")
    bench.append_report([policy(p99=0.2)], "lgtc bench --only policy", docs / "BENCHMARKS.md", "test machine")
    data = json.loads((docs / "bench_last.json").read_text())
    assert list(data["kinds"]) == ["simulator", "policy_step"]
    assert data["kinds"]["policy_step"]["command"] == "lgtc bench --only policy"
    assert data["kinds"]["simulator"]["command"] == "lgtc bench"
    rows = bench.last_rows(docs / "bench_last.json")
    assert [r["p99_ms"] for r in rows if r["bench"] == "policy_step"] == [0.2]
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert bench.readme_rows_in(readme) == bench.readme_table(rows)
    table = bench.readme_table(rows)
    assert "| simulator, B = 1024, N = 10 | >= 1e6 agent-steps/s, >= 50x our per-env numpy loop (same rules, one env " \
           "at a time) | 3.6e6 agent-steps/s, 100x our numpy loop (2 threads) | met |" in table
    assert "| runtime at N = 100 | 20 Hz (tick p99 < 50 ms), flat memory | not measured | not comparable |" in table
    # the markdown tables read back into the rows they were made from (3 significant digits)
    (_, command, machine, read), _ = bench.read_report((docs / "BENCHMARKS.md").read_text())
    assert (command, machine) == ("lgtc bench", "test machine")
    assert [verdict(r) for r in read] == [MET, MISSED]


def test_nan_is_stored_as_null(tmp_path):
    row = {**cbf(), "cvxpy_p50_ms": float("nan")}
    bench.record_last([row], "lgtc bench", "m", tmp_path / "last.json")
    assert '"cvxpy_p50_ms": null' in (tmp_path / "last.json").read_text()


def test_the_readme_table_is_the_one_the_latest_benches_give():
    """README.md's "Measured here" table is `readme_table` of docs/bench_last.json: after a bench,
    `lgtc bench` rewrote it; if this fails, the README was edited by hand or the file is stale."""
    expected = bench.readme_table(bench.last_rows(ROOT / "docs" / "bench_last.json"))
    assert bench.readme_rows_in(ROOT / "README.md") == expected
    assert "not measured" not in expected                        # every target has been measured here


def test_assignment_hard_family_rows_have_their_own_target():
    hard = dict(assignment(max_s=0.9, gap=0.0099, within=0.95), family="multi-type", types=3, cvxpy_gap_limit=0.01,
                ratio_cvxpy_over_fast_median=4.5)
    assert verdict(hard) == MET
    assert verdict(dict(hard, fast_within_1s_gap_1pct=0.9)) == MISSED
    assert verdict(dict(hard, ratio_cvxpy_over_fast_median=3.9)) == MISSED
    assert verdict(dict(assignment(), family="one-type", cvxpy_gap_limit=0.01)) == MET  # the one-type target
    table = bench.readme_table([dict(assignment(), family="one-type", cvxpy_gap_limit=0.01), hard])
    assert "at the same 1 % gap limit" in table and "r = 3: 95 % of 10 instances" in table


def test_training_time_to_a_threshold_is_read_from_the_log_and_the_checkpoint_evals(tmp_path):
    from lgtc_ros.bench import bench_training, verdict

    log = tmp_path / "train_log.csv"
    log.write_text("update,env_steps,agent_steps,wall_s\n" + "".join(
        f"{u},{u * 6400},{u * 64000},{u * 10.0}\n" for u in range(1, 11)))
    evals = tmp_path / "evals.csv"
    evals.write_text("update,eval_return_100ep_seed1000\n5,4.0\n8,5.9\n10,6.1\n")
    (row,) = bench_training(log, evals, threshold=5.8)
    assert (row["first_update_at_threshold"], row["env_steps_to_threshold"]) == (8, 51200)
    assert row["wall_min_to_threshold"] == 80 / 60 and verdict(row) == "met"
    (never,) = bench_training(log, evals, threshold=7.0)
    assert never["wall_min_to_threshold"] is None and verdict(never) == "missed"
