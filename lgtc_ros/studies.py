"""Studies behind `lgtc reproduce ablations`: distributions where the paper shows one run.

- `discharge_distribution`: the Fig. 5/6 discharge mission (`discharge_5x3`) flown over many
  seeds, each policy through the per-drone runtime exactly as `lgtc sim --record` flies it, and
  the event measured by `replay.event_outcomes`, the function `lgtc replay` reports with.
  `discharge_markdown` and `discharge_plot` summarize the rows.
- `state_range`: how far an LGTC model's consensus state x strays from [-1, 1] over seeded
  episodes (the contractivity-penalty ablation, alpha = 0, asks whether it leaves that box).

Plain functions, no ROS, no training code: a study runs wherever the simulator runs.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgtc_ros import comm
from lgtc_ros.bags import START_EPOCH_NS, Recording
from lgtc_ros.replay import event_outcomes
from lgtc_ros.scenario import Scenario, load_scenario, resolve_scenario, validate

RUNTIME_CBF = "decentralized"
"""The safety filter `lgtc sim --record` flies with by default: the single-run numbers of
models/README.md were measured with it, so the distribution is comparable to them."""


def _scenario(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(resolve_scenario(scenario))


# ----------------------------------------------------------------------------- the discharge study


def seeded_starts(scenario: Scenario) -> Scenario:
    """`scenario` with the agents' start positions left to the seeded draw (the simulator's
    jittered grid over [-w, w]^2, w = `random.agent_half_width`); everything else unchanged."""
    varied = dataclasses.replace(scenario, initial=dataclasses.replace(scenario.initial, agent_pos=None))
    validate(varied)
    return varied


def _with_episode(scenario: Scenario, episode_s: float | None) -> Scenario:
    if episode_s is None:
        return scenario
    steps = int(round(episode_s / scenario.dt))
    last_event = max((scenario.event_step(e) for e in scenario.events), default=0)
    # event_outcomes needs the tick after the event's (its effect shows one tick late) and one more
    if steps < last_event + 3:
        raise ValueError(f"episode_s = {episode_s:g} s ends before the scenario's last event "
                         f"({last_event * scenario.dt:g} s) can be measured; give at least "
                         f"{(last_event + 3) * scenario.dt:g} s")
    short = dataclasses.replace(scenario, episode_steps=steps)
    validate(short)
    return short


def _agent_event(scenario: Scenario):
    for e in scenario.events:
        if e.kind in ("discharge", "dropout"):
            return e
    raise ValueError(f"scenario '{scenario.name}' has no discharge or dropout event to measure")


class _Ticks:
    """An in-memory stand-in for `bags.BagRecorder`: the runtime hands it exactly what it would
    write to the bag, and `recording()` arranges that as `read_bag` would. A bag per episode
    would cost disk and serialization for nothing the event measurement reads."""

    def __init__(self, scenario: Scenario, meta: dict):
        self.scenario, self.meta = scenario, meta
        self.rows: list[tuple] = []

    def write_tick(self, t, pos, active, v_nominal, v_safe, messages, demands, states, reward_terms=None) -> None:
        # copies: the runtime may reuse its arrays
        self.rows.append((float(t), np.array(pos, dtype=np.float64), np.array(active, dtype=bool),
                          np.array(v_nominal, dtype=np.float64), np.array(v_safe, dtype=np.float64),
                          {m.agent_id: np.array(m.psi, dtype=np.float64) for m in messages},
                          demands, [None if s is None else tuple(np.array(v) for v in s) for s in states],
                          reward_terms))

    def recording(self) -> Recording:
        s = self.scenario
        n, m = s.n_agents, s.n_consumers
        t_count = len(self.rows)
        first_state = next((st for row in self.rows for st in row[7] if st is not None), None)
        f = 0 if first_state is None else first_state[0].size
        r_state = 0 if first_state is None or len(first_state) < 4 else first_state[3].size
        first_psi = next((p for row in self.rows for p in row[5].values()), None)
        g = 0 if first_psi is None else first_psi.size
        # missing samples as read_bag leaves them: NaN, choice -1
        x = np.full((t_count, n, f), np.nan)
        attention = np.full((t_count, n, m), np.nan)
        choice = np.full((t_count, n), -1, dtype=np.int64)
        supply = np.full((t_count, n, r_state), np.nan)
        psi = np.full((t_count, n, g), np.nan)
        for k, row in enumerate(self.rows):
            for i, st in enumerate(row[7]):
                if st is not None:
                    x[k, i], attention[k, i], choice[k, i] = st[0], st[1], int(st[2])
                    if r_state:
                        supply[k, i] = st[3]
            for i, p in row[5].items():
                psi[k, i] = p
        terms: dict[str, np.ndarray] = {}
        if self.rows and self.rows[0][8] is not None:
            names = list(self.rows[0][8][0])
            values = np.stack([np.asarray(row[8][1], dtype=np.float64) for row in self.rows])  # [T,N,K]
            terms = {name: values[:, :, j] for j, name in enumerate(names)}
        demands = [row[6] for row in self.rows]
        return Recording(
            names=comm.default_names(n), t=np.array([row[0] for row in self.rows]),
            pos=np.stack([row[1] for row in self.rows]), active=np.stack([row[2] for row in self.rows]),
            v_nominal=np.stack([row[3] for row in self.rows]), v_safe=np.stack([row[4] for row in self.rows]),
            x=x, attention=attention, choice=choice, supply=supply, psi=psi,
            consumer_pos=np.stack([np.asarray(d.consumer_pos, dtype=np.float64) for d in demands]),
            demand=np.stack([np.asarray(d.demand, dtype=np.float64) for d in demands]),
            kinds=np.asarray(demands[0].kinds), reward_terms=terms, meta=self.meta,
            arena_size_m=s.arena_size_m, altitude_m=s.altitude_m, start_epoch_ns=START_EPOCH_NS, rejected={})


def _mission_meta(scenario: Scenario, policy: str, seed: int) -> dict:
    """The bag's mission dict as `lgtc sim --record` writes it (event_outcomes reads `events`)."""
    return {"scenario": scenario.name, "scenario_file": scenario.source, "policy": policy, "seed": seed,
            "dt": scenario.dt, "cbf": RUNTIME_CBF, "comm_radius": scenario.comm_radius,
            "consumer_radius": scenario.consumer_radius, "safety_radius": scenario.safety_radius,
            "latency_ticks": 0, "drop_prob": 0.0,
            "events": [{"time_s": e.time_s, "kind": e.kind, "agent": e.agent, "select": e.select}
                       for e in scenario.events]}


class _Flyer:
    """One policy, ready to fly seed after seed: per-drone modules (loaded once; they hold no
    state, each drone's `DroneAgent` does) or a centralized controller."""

    def __init__(self, spec, scenario: Scenario):
        from lgtc_ros.policy.learned import LearnedPolicy
        from lgtc_ros.runtime.drone import load_drone_modules

        self.spec, self.drones, self.central = spec, None, None
        if isinstance(spec, (str, Path)) and str(spec) in ("expert", "random"):
            return  # built per seed: the random policy draws from its seed
        if isinstance(spec, (str, Path)):
            # the modules `lgtc sim --record` flies: one loaded copy per drone
            self.drones, _ = load_drone_modules(spec, scenario, scenario.n_agents)
            return
        policy = spec(scenario)
        if isinstance(policy, LearnedPolicy):
            self.drones = [policy.step] * scenario.n_agents
        else:
            self.central = policy

    def runtime_args(self, seed: int) -> dict:
        if self.drones is not None:
            return {"drones": self.drones}
        if self.central is not None:
            return {"centralized": self.central}
        from lgtc_ros.evaluate import RandomPolicy
        from lgtc_ros.expert import CentralizedExpert

        return {"centralized": CentralizedExpert() if str(self.spec) == "expert" else RandomPolicy(seed)}


def _label(spec) -> str:
    if isinstance(spec, (str, Path)):
        return str(spec) if str(spec) in ("expert", "random") else Path(spec).stem
    return getattr(spec, "__name__", type(spec).__name__)


def _policies(make_policy) -> dict[str, Any]:
    if isinstance(make_policy, Mapping):
        return dict(make_policy)
    return {_label(make_policy): make_policy}


def _fly_discharge(scenario: Scenario, flyer: _Flyer, label: str, seed: int) -> tuple[dict, Recording]:
    """One seeded mission through the per-drone runtime; its row and its recording."""
    from lgtc_ros.runtime.radio import RadioConfig
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime

    event = _agent_event(scenario)
    # lgtc sim's runtime settings: default CBF, an ideal radio seeded like the mission
    config = RuntimeConfig(cbf=RUNTIME_CBF, radio=RadioConfig(seed=seed))
    ticks = _Ticks(scenario, _mission_meta(scenario, label, seed))
    result = SwarmRuntime(scenario, config=config, seed=seed, recorder=ticks, **flyer.runtime_args(seed)).run()
    rec = ticks.recording()
    outcome = next((o for o in event_outcomes(rec) if o.time_s == event.time_s and o.kind == event.kind), None)
    k = scenario.event_step(event)
    active, supply = np.stack(result.trace.active), np.stack(result.trace.supply)
    # the event fires inside tick k's world step: tick k still shows the drone before it
    if event.kind == "dropout" or event.land:
        hit = active[k] & ~active[k + 1]
    else:
        hit = active[k] & (supply[k + 1].sum(-1) < supply[k].sum(-1) - 1e-6)
    hit_ids = [int(i) for i in np.flatnonzero(hit)]
    row = {
        "seed": int(seed), "policy": label,
        "reallocation_s": outcome.reallocation_s if outcome is not None else math.nan,
        # None: a centralized controller records no per-drone choice (replay's convention)
        "decision_s": outcome.decision_s if outcome is not None else math.nan,
        "orphaned": outcome.orphaned if outcome is not None else [],
        "discharged": hit_ids[0] if hit_ids else None,
        "uncovered_before": outcome.uncovered_before if outcome is not None else math.nan,
        "uncovered_end": outcome.uncovered_end if outcome is not None else float(rec.demand[-1].sum()),
        "collisions": int(result.stats.collisions[0]),
        "min_distance": float(result.stats.min_distance[0]),
        "event_time_s": float(event.time_s), "episode_s": float(scenario.duration_s),
        "start_pos": np.round(result.trace.pos[0], 4).tolist(),
    }
    return row, rec


def discharge_distribution(scenario: Scenario | str | Path, make_policy, seeds: Iterable[int],
                           episode_s: float | None = None,
                           progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """The discharge event (Fig. 5/6) measured over `seeds`, one row per (policy, seed).

    What varies per seed: only the agents' start positions, drawn by the simulator's seeded
    jittered grid (`seeded_starts`); consumers, demands, supplies and the event itself (its time,
    `select: lone`, landing) stay as in the scenario. Which drone is alone at its consumer when
    the event fires, and so which one discharges, then follows from the flight. Every other
    random input is off (ideal radio), so a (policy, seed) pair is deterministic.

    How it flies: as `lgtc sim --record` does, through the per-drone runtime (`SwarmRuntime`,
    decentralized CBF, world seed = `seed`); the ticks the runtime would record in the bag are
    kept in memory as a `bags.Recording` and measured by `replay.event_outcomes`, so the
    numbers mean what `lgtc replay` reports for one run.

    `make_policy`: one policy spec or a mapping label -> spec; a spec is "expert", "random", a
    model .pt path (label: its stem), or a factory(scenario) -> policy (a `LearnedPolicy` flies
    per drone, anything else as a centralized controller). `episode_s` shortens every episode
    (None: the scenario's length). `progress(done, total, row)` is told of each finished episode.

    Row: seed, policy, reallocation_s (event -> every orphaned consumer served again; NaN: never,
    or nothing orphaned), decision_s (-> a flying drone selects it; None for a centralized
    controller), orphaned (consumer indices), discharged (drone index or None: no drone was
    alone at a consumer, the event hit nobody), uncovered_before / uncovered_end (open demand
    just before the event / at the end), collisions, min_distance, event_time_s, episode_s,
    start_pos ([N][2], arena units).
    """
    base = _with_episode(seeded_starts(_scenario(scenario)), episode_s)
    _agent_event(base)  # a mission without the event fails now, not after loading the models
    seeds = [int(s) for s in seeds]
    policies = _policies(make_policy)
    total, rows = len(seeds) * len(policies), []
    for label, spec in policies.items():
        flyer = _Flyer(spec, base)
        for seed in seeds:
            row, _ = _fly_discharge(base, flyer, label, seed)
            rows.append(row)
            if progress is not None:
                progress(len(rows), total, row)
    return rows


def _never(row: dict) -> bool:
    return bool(row["orphaned"]) and not math.isfinite(row["reallocation_s"])


def discharge_stats(rows: list[dict]) -> dict[str, dict]:
    """Per policy: n, orphaned (episodes where the event orphaned a consumer), never (orphaned,
    never served again), and median / IQR / mean / max of reallocation_s over the re-served
    episodes (NaN when none)."""
    out = {}
    for label in dict.fromkeys(r["policy"] for r in rows):
        sel = [r for r in rows if r["policy"] == label]
        hit = [r for r in sel if r["orphaned"]]
        v = np.array([r["reallocation_s"] for r in hit if math.isfinite(r["reallocation_s"])], dtype=float)
        q1, med, q3 = np.percentile(v, [25, 50, 75]) if v.size else (math.nan,) * 3
        out[label] = {"n": len(sel), "orphaned": len(hit), "never": sum(_never(r) for r in sel),
                      "median": float(med), "q1": float(q1), "q3": float(q3),
                      "mean": float(v.mean()) if v.size else math.nan, "max": float(v.max()) if v.size else math.nan,
                      "collisions": int(sum(r["collisions"] for r in sel))}
    return out


def discharge_markdown(rows: list[dict]) -> str:
    """A table per policy of the time to the new allocation (reallocation_s)."""
    def f(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.1f}"

    lines = ["| policy | episodes | consumer orphaned | median (s) | IQR (s) | mean (s) | max (s) | never re-served "
             "| collisions |", "|---|---|---|---|---|---|---|---|---|"]
    for label, s in discharge_stats(rows).items():
        lines.append(f"| {label} | {s['n']} | {s['orphaned']} | {f(s['median'])} | {f(s['q1'])}-{f(s['q3'])} "
                     f"| {f(s['mean'])} | {f(s['max'])} | {s['never']} | {s['collisions']} |")
    # the statistics leave the never-re-served out: say so beside them, not in a footnote elsewhere
    lines += ["", "Time from the discharge to the moment every orphaned consumer's open demand falls below its "
              "value just after the event (`replay.event_outcomes`). Median, IQR, mean and max are over the "
              "episodes where that happened; \"never re-served\" counts the orphaned episodes where it did not "
              "before the episode ended; an episode without an orphaned consumer (no drone alone at a consumer "
              "when the event fired) counts in neither."]
    return "\n".join(lines) + "\n"


def discharge_plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Box plot and the individual episodes of reallocation_s per policy; the never re-served
    (NaN) are counted in the axis labels and the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = discharge_stats(rows)
    labels = list(stats)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.5 * len(labels) + 2.0), 4.8))
    rng = np.random.default_rng(0)  # the jitter of the strip only; fixed so the figure is reproducible
    for k, label in enumerate(labels):
        v = np.array([r["reallocation_s"] for r in rows if r["policy"] == label and r["orphaned"]
                      and math.isfinite(r["reallocation_s"])], dtype=float)
        if v.size:
            ax.boxplot([v], positions=[k], widths=0.5, showfliers=False, medianprops={"color": "k"})
            ax.plot(k + rng.uniform(-0.15, 0.15, v.size), v, "o", ms=5, alpha=0.7, color=f"C{k}")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([f"{label}\n{s['orphaned'] - s['never']}/{s['n']} re-served, {s['never']} never"
                        + (f",\n{s['n'] - s['orphaned']} nothing orphaned" if s["n"] > s["orphaned"] else "")
                        for label, s in stats.items()], fontsize=9)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(bottom=0)  # from 0: the gap between policies is read against the whole time
    ax.set_ylabel("time to the new allocation (s)")
    never = ", ".join(f"{label} {s['never']}/{s['orphaned']}" for label, s in stats.items())
    ax.set_title(title or f"after the discharge: time until the orphaned consumer is served again\n"
                 f"never re-served / orphaned: {never}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the consensus state's range


class _StateMeter:
    """Wraps a `LearnedPolicy` for `evaluate.rollout` and reads its consensus state after every
    call; the policy's actions and state are passed through untouched."""

    def __init__(self, policy):
        self.policy = policy
        self.max_abs, self.sum_abs, self.over, self.entries = 0.0, 0.0, 0, 0
        self.episode_max: list[float] = []
        self._batch_max: torch.Tensor | None = None

    def reset(self) -> None:
        self._flush()
        self.policy.reset()

    def _flush(self) -> None:
        if self._batch_max is not None:
            self.episode_max.extend(self._batch_max.tolist())
            self._batch_max = None

    def __call__(self, world) -> torch.Tensor:
        active = world.active.clone()  # the agents the step updates (landed ones keep their last x)
        action = self.policy(world)
        x = self.policy.state["x"].abs().double()  # [B,N,F]
        taken = x[active]  # [K,F]
        self.entries += taken.numel()
        self.sum_abs += float(taken.sum())
        self.over += int((taken > 1.0).sum())
        if taken.numel():
            self.max_abs = max(self.max_abs, float(taken.max()))
        per_env = torch.where(active[..., None], x, torch.zeros_like(x)).flatten(1).max(1).values
        self._batch_max = per_env if self._batch_max is None else torch.maximum(self._batch_max, per_env)
        return action


def _has_consensus(policy) -> bool:
    if "consensus" in policy.meta:  # an exported model says so in its metadata
        return bool(policy.meta["consensus"])
    return bool(getattr(getattr(policy.step, "cell", None), "consensus", False))  # a trainer's DroneStep


def state_range(model_path: str | Path, scenario: Scenario | str | Path, episodes: int, seed: int) -> dict:
    """Range of an LGTC model's consensus state x over `episodes` seeded episodes of `scenario`
    (the batched evaluator, `evaluate.rollout`, as `lgtc eval` flies; x is what the policy
    carries per agent between steps, `LearnedPolicy.state["x"]`). Every entry of x of every
    agent that flies at a step counts once per step.

    Returns max_abs_x, frac_abs_gt_1 (entries with |x| > 1), mean_abs_x, entries, the largest
    |x| per episode, and the model's certified state bound / contraction rate when its metadata
    has them. A model without the consensus state (ippo, momappo, hrl) raises ValueError.
    """
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy

    if episodes < 1:
        raise ValueError(f"episodes = {episodes}: must be >= 1")
    scenario = _scenario(scenario)
    policy = LearnedPolicy.load(model_path, scenario)
    if not _has_consensus(policy):
        raise ValueError(f"{model_path} has no consensus state (not an LGTC model: trained with --algo ippo, "
                         f"momappo or another peer); state_range measures the LGTC state x")
    meter = _StateMeter(policy)
    stats, _ = rollout(scenario, meter, episodes, seed=seed)
    meter._flush()
    return {"model": str(model_path), "scenario": scenario.name, "episodes": int(episodes), "seed": int(seed),
            "state_dim": int(policy.step.state_dim), "entries": int(meter.entries),
            "max_abs_x": meter.max_abs, "frac_abs_gt_1": meter.over / max(meter.entries, 1),
            "mean_abs_x": meter.sum_abs / max(meter.entries, 1),
            "max_abs_x_per_episode": [float(v) for v in meter.episode_max],
            "state_bound": policy.meta.get("state_bound"), "contraction_rate": policy.meta.get("contraction_rate"),
            "return_mean": stats.summary()["return_mean"]}


__all__ = ["discharge_distribution", "discharge_markdown", "discharge_plot", "discharge_stats", "seeded_starts",
           "state_range"]
