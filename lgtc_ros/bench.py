"""The benchmark harness behind `lgtc bench`: every speed target is measured here, never in tests.

Each run appends a dated section (command, machine, table) to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lgtc_ros.scenario import Scenario, load_scenario, resolve_scenario


def machine() -> str:
    """CPU model, cores visible and torch threads: the context every number needs."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def _time_per_call(fn: Callable[[], None], min_time: float, min_calls: int) -> float:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_time:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def bench_simulator(scenario: Scenario, batches=(1, 64, 1024), min_time: float = 1.0) -> list[dict]:
    """Agent-steps/s of `World.step` at each batch size vs a per-env Python loop of the same dynamics."""
    from lgtc_ros.world import World
    from lgtc_ros.world.reference import OneEnv, step_one

    rows = []
    n = scenario.n_agents
    for b in batches:
        world = World(scenario, n_envs=b, seed=0, solve_assignment=False)
        action = torch.randn(b, n, 2, generator=torch.Generator().manual_seed(0)) * scenario.v_max

        def batched():
            world.step(action)
            if int(world.t[0]) >= scenario.episode_steps - 1:
                world.t.zero_()  # keep events and episode length out of the timed region

        per_step = _time_per_call(batched, min_time, 10)
        envs = [OneEnv(world.pos[e].double().numpy(), world.supply[e].double().numpy(),
                       world.active[e].numpy(), world.consumer_pos[e].double().numpy(),
                       world.need[e].double().numpy(), world.demand[e].double().numpy(),
                       world.assign[e].numpy(), world.contributed[e].numpy()) for e in range(b)]
        act_np = action.double().numpy()

        def loop():
            for e in range(b):
                envs[e] = step_one(scenario, envs[e], act_np[e])[0]

        per_loop = _time_per_call(loop, min_time / 2, 2)
        rows.append({
            "bench": "simulator", "envs": b, "agents": n,
            "agent_steps_per_s": b * n / per_step, "loop_agent_steps_per_s": b * n / per_loop,
            "speedup_vs_loop": per_loop / per_step, "ms_per_step": per_step * 1e3,
        })
    return rows


def bench_assignment(ns=(10, 30, 50), m: int = 10, instances: int = 10, cvxpy_instances: int = 5,
                     cvxpy_time_limit: float = 60.0, seed: int = 0,
                     progress: Callable[[str], None] | None = None) -> list[dict]:
    """Solve time of `assignment.solve` vs plain cvxpy + SCIP on the same random instances."""
    from lgtc_ros.assignment import random_problem, solve, solve_cvxpy

    rows = []
    for n in ns:
        rng = np.random.default_rng(seed + n)
        problems = [random_problem(rng, n, m) for _ in range(instances)]
        fast = []
        for p in problems:
            fast.append(solve(p, time_limit=1.0, gap_limit=0.01))
            if progress:
                progress(f"assignment N={n} fast")
        ref = []
        for p in problems[:cvxpy_instances]:
            ref.append(solve_cvxpy(p, time_limit=cvxpy_time_limit))
            if progress:
                progress(f"assignment N={n} cvxpy")
        ft = [r.solve_time for r in fast]
        rt = [r.solve_time for r in ref]
        paired = [r.solve_time / f.solve_time for f, r in zip(fast, ref)]
        worse = [f.objective - r.objective for f, r in zip(fast, ref)]
        rows.append({
            "bench": "assignment", "agents": n, "consumers": m, "instances": instances,
            "fast_median_s": statistics.median(ft), "fast_max_s": max(ft),
            "fast_max_gap": max(r.gap for r in fast),
            "fast_within_1s_gap_1pct": sum(r.solve_time < 1.0 and r.gap <= 0.01 for r in fast) / len(fast),
            "fast_solvers": sorted({r.solver for r in fast}),
            "cvxpy_instances": len(ref), "cvxpy_median_s": statistics.median(rt) if rt else float("nan"),
            "cvxpy_max_s": max(rt) if rt else float("nan"),
            "cvxpy_time_limit_hits": sum(r.status == "time_limit" for r in ref),
            "ratio_cvxpy_over_fast_median": statistics.median(paired) if paired else float("nan"),
            "fast_minus_cvxpy_objective_max": max(worse) if worse else float("nan"),
        })
    return rows


def default_scenario() -> Scenario:
    return load_scenario(resolve_scenario("paper_10x4"))


def format_rows(rows: list[dict]) -> str:
    """A markdown table per bench kind."""
    out = []
    for kind in dict.fromkeys(r["bench"] for r in rows):
        group = [r for r in rows if r["bench"] == kind]
        keys = [k for k in group[0] if k != "bench"]
        out.append(f"**{kind}**\n")
        out.append("| " + " | ".join(keys) + " |")
        out.append("|" + "---|" * len(keys))
        for r in group:
            out.append("| " + " | ".join(_fmt(r[k]) for k in keys) + " |")
        out.append("")
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def append_report(rows: list[dict], command: str, path: str | Path = "docs/BENCHMARKS.md") -> Path:
    """Append a dated section with the command, the machine and the tables to BENCHMARKS.md."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmarks\n\nEvery section below was appended by `lgtc bench` (the command is "
                        "given); numbers are measured, never edited by hand. Targets: DESIGN §5.\n")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = f"\n## {stamp}\n\n- command: `{command}`\n- machine: {machine()}\n\n{format_rows(rows)}\n"
    with path.open("a") as fh:
        fh.write(section)
    return path
