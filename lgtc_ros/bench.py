"""The benchmark harness behind `lgtc bench`: every speed target is measured here, never in tests.

Each run appends a dated section (command, machine, table) to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import datetime as _dt
import math
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
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads "
            f"by default; per-drone benches pin 1)")


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
            "bench": "simulator", "envs": b, "agents": n, "threads": torch.get_num_threads(),
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


def append_report(rows: list[dict], command: str, path: str | Path = "docs/BENCHMARKS.md",
                  machine_info: str | None = None) -> Path:
    """Append a dated section with the command, the machine and the tables to BENCHMARKS.md."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmarks\n\nEvery section below was appended by `lgtc bench` (the command is "
                        "given); numbers are measured, never edited by hand. Targets: DESIGN §5.\n")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = f"\n## {stamp}\n\n- command: `{command}`\n- machine: {machine_info or machine()}\n\n{format_rows(rows)}\n"
    with path.open("a") as fh:
        fh.write(section)
    return path


def bench_policy_step(model_path: str | Path, neighbours: int = 10, consumers: int = 10, calls: int = 2000,
                      seed: int = 0) -> list[dict]:
    """One drone's exported step on ONE CPU thread with `neighbours` messages and M = `consumers`,
    run as the drones run it (Static Runtime) and by the plain TorchScript interpreter."""
    from lgtc_ros.policy.export import load, static_forward

    torch.set_num_threads(1)
    module, meta = load(model_path)
    g = torch.Generator().manual_seed(seed)
    r, f, gdim = meta["shapes"]["r"], meta["shapes"]["F"], meta["shapes"]["G"]
    kinds = torch.tensor([1.0 if res["kind"] == "persistent" else 0.0 for res in meta["scenario"]["resources"]])
    rnd = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    args = (rnd(2) * 2 - 1, rnd(r), rnd(consumers, 2) * 2 - 1, rnd(consumers, r), kinds, rnd(f) * 2 - 1,
            rnd(neighbours, 2) * 2 - 1, rnd(neighbours, gdim), rnd(neighbours, f))
    fast = static_forward(module)
    executors = {"static runtime" if fast is not module else "interpreter (no static runtime)": fast}
    executors.setdefault("interpreter", module)
    rows = []
    with torch.no_grad():
        for name, fn in executors.items():
            for _ in range(50):  # TorchScript profiles and optimizes its first calls
                fn(*args)
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn(*args)
                times.append(time.perf_counter() - start)
            t = np.array(times) * 1e3
            rows.append({"bench": "policy_step", "model": Path(model_path).name, "executor": name, "threads": 1,
                         "neighbours": neighbours, "consumers": consumers,
                         "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))})
    return rows


def _rss_mb() -> float:
    """Resident memory of this process now, MB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return math.nan


def bench_runtime(model_path: str | Path, scenarios=("scale_50x10", "scale_100x10"), ticks: int = 200,
                  cbf: str = "decentralized") -> list[dict]:
    """Wall time of a runtime tick at N = 50 and 100, split into policy, CBF, the simulated plant and
    the rest, and resident memory after 20 ticks and at the end (does a long mission grow it?).

    `overhead` counts everything beyond the policy and the CBF (the simulator included);
    `runtime_only` excludes the simulated plant too (on hardware there is none)."""
    import dataclasses

    from lgtc_ros.runtime.drone import load_drone_modules
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime

    torch.set_num_threads(1)
    rows = []
    for name in scenarios:
        scenario = dataclasses.replace(load_scenario(resolve_scenario(name)), episode_steps=ticks)
        drones, _ = load_drone_modules(model_path, scenario, scenario.n_agents, any_consumers=True)
        rss: list[float] = []
        res = SwarmRuntime(scenario, drones=drones, config=RuntimeConfig(cbf=cbf), seed=0).run(
            progress=lambda _: rss.append(_rss_mb()))  # after each tick's timed region
        ms = lambda a, q: float(np.percentile(a, q) * 1e3)  # noqa: E731
        rows.append({
            "bench": "runtime", "scenario": scenario.name, "agents": scenario.n_agents, "cbf": cbf, "ticks": ticks,
            "tick_p50_ms": ms(res.tick_s, 50), "tick_p99_ms": ms(res.tick_s, 99),
            "ticks_over_period": int((res.tick_s > scenario.dt).sum()),
            "policy_p50_ms": ms(res.policy_s, 50), "cbf_p50_ms": ms(res.cbf_s, 50),
            "world_p50_ms": ms(res.world_s, 50),
            "overhead_p50_ms": ms(res.overhead_s, 50), "overhead_p99_ms": ms(res.overhead_s, 99),
            "overhead_p99_pct_of_tick": 100 * float(np.percentile(res.overhead_s, 99)) / scenario.dt,
            "runtime_only_p99_ms": ms(res.runtime_overhead_s, 99),
            "runtime_only_p99_pct_of_tick": 100 * float(np.percentile(res.runtime_overhead_s, 99)) / scenario.dt,
            "rss_mb_tick20": rss[min(19, len(rss) - 1)], "rss_mb_end": rss[-1]})
    return rows


GRAPH_CASES = (("discharge_5x3", "process"), ("paper_10x4", "process"), ("scale_20x4", "process"),
               ("scale_20x4", "swarm"), ("scale_50x10", "swarm"))
"""(scenario, agents) of the multi-process graph bench: N = 5, 10, 20 with one process per drone,
N = 20 and 50 with every drone in one swarm_node (50 agent processes would need ~14 GB)."""


def bench_graph(cases=GRAPH_CASES, seconds: float = 8.0, workdir: str | Path = "runs/bench_graph",
                progress: Callable[[str], None] | None = None) -> list[dict]:
    """The ROS graph as launched (`graph_processes`: one OS process per node, real rclpy, its own
    ROS_DOMAIN_ID), watched by a probe for `seconds` of mission: safe-command rate (slowest drone
    and median), pose rate, closest pair, fallbacks, CPU (% of one core) and memory per process."""
    import signal

    from lgtc_ros.launch_plan import sim_graph
    from lgtc_ros.nodes.probe import watch_mission

    rows = []
    for k, (name, agents) in enumerate(cases):
        scenario = load_scenario(resolve_scenario(name))
        specs = sim_graph(name, agents=agents, any_consumers=True)
        if progress:
            progress(f"graph {name} ({agents})")
        r = watch_mission(specs, Path(workdir) / f"{name}_{agents}", 60 + (os.getpid() + k) % 40, seconds, scenario,
                          stop_signal=signal.SIGINT)
        hz = sorted(r.command_hz.values())
        agent_cpu = [v for node, v in r.cpu_pct.items() if "agent" in node or "swarm" in node]
        agent_rss = [v for node, v in r.rss_mb.items() if "agent" in node or "swarm" in node]
        agent_rss0 = [v for node, v in r.rss_start_mb.items() if "agent" in node or "swarm" in node]
        rows.append({
            "bench": "graph", "scenario": name, "agents": scenario.n_agents, "agent_processes": agents,
            "processes": len(specs), "watched_s": round(r.seconds, 1), "start_s": round(r.start_s, 1),
            "cmd_hz_min": hz[0] if hz else 0.0, "cmd_hz_median": hz[len(hz) // 2] if hz else 0.0,
            "pose_hz": r.pose_hz, "closest_m": r.closest_m, "safety_m": scenario.safety_radius * scenario.arena_size_m / 2,
            "ticks_too_close": r.ticks_too_close, "fallbacks": r.fallbacks,
            "cpu_world_pct": r.cpu_pct.get("/lgtc_world", math.nan), "cpu_radio_pct": r.cpu_pct.get("/lgtc_radio", math.nan),
            "cpu_cbf_pct": r.cpu_pct.get("/lgtc_cbf", math.nan),
            "cpu_agent_pct": float(np.mean(agent_cpu)) if agent_cpu else math.nan,
            "cpu_total_pct": float(sum(r.cpu_pct.values())),
            "rss_agent_mb_start": float(np.mean(agent_rss0)) if agent_rss0 else math.nan,
            "rss_agent_mb_end": float(np.mean(agent_rss)) if agent_rss else math.nan,
            "rss_total_mb": float(sum(r.rss_mb.values())),
            "exits_not_0_within_5s": sum(c != 0 for c in r.exit_codes.values())})
    return rows


def bench_collisions(model_path: str | Path, episodes: int = 100, scenario_name: str = "paper_10x4",
                     progress: Callable[[str], None] | None = None) -> list[dict]:
    """Collisions (pairs closer than safety_radius) over seeded episodes, CBF on and off."""
    from lgtc_ros.runtime.drone import load_drone_modules
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime

    torch.set_num_threads(1)
    scenario = load_scenario(resolve_scenario(scenario_name))
    drones, _ = load_drone_modules(model_path, scenario, scenario.n_agents, separate=False)
    rows = []
    for cbf in ("decentralized", "off"):
        hits, mins, fallbacks, returns = 0, [], 0, []
        for seed in range(episodes):
            res = SwarmRuntime(scenario, drones=drones, config=RuntimeConfig(cbf=cbf), seed=seed).run()
            hits += int(res.stats.collisions.sum())
            mins.append(float(res.stats.min_distance.min()))
            fallbacks += res.cbf.get("fallback", 0)
            returns.append(float(res.stats.returns.mean()))
            if progress:
                progress(f"collisions cbf={cbf} episode {seed}")
        rows.append({"bench": "collisions", "scenario": scenario.name, "episodes": episodes, "cbf": cbf,
                     "collisions": hits, "min_distance": min(mins), "cbf_fallbacks": fallbacks,
                     "return_mean": float(np.mean(returns))})
    return rows


def bench_training(log_csv: str | Path) -> list[dict]:
    """Training throughput of a finished run, read from its train_log.csv."""
    import csv

    rows = list(csv.DictReader(Path(log_csv).open()))
    last = rows[-1]
    wall = float(last["wall_s"])
    return [{"bench": "training", "log": str(log_csv), "updates": len(rows), "env_steps": int(float(last["env_steps"])),
             "wall_min": wall / 60, "env_steps_per_s": float(last["env_steps"]) / wall,
             "agent_steps_per_s": float(last["agent_steps"]) / wall}]
