"""Studies behind `lgtc reproduce ablations`: distributions where the paper shows one run.

- `discharge_distribution`: the Fig. 5/6 discharge mission (`discharge_5x3`) flown over many
  seeds, each policy through the per-drone runtime exactly as `lgtc sim --record` flies it, and
  the event measured by `replay.event_outcomes`, the function `lgtc replay` reports with.
  `discharge_markdown` and `discharge_plot` summarize the rows.
- `state_range`: how far an LGTC model's consensus state x strays from [-1, 1] over seeded
  episodes (the contractivity-penalty ablation, alpha = 0, asks whether it leaves that box).
- The radio (issue 12): `radio_on_off`, the return with every neighbour message dropped
  (`RadioOff`) against the usual graph, at N = 10, 50, 100; `radio_runtime`, the same through
  the per-drone runtime with and without its CBF; `graph_filter_usage`, how large the
  neighbour terms are inside the LGTC cell and what cutting them (S = 0) does; `zero_s_ablation`,
  a run trained with S = 0 against the usual one. `radio_report` writes docs/reproduction/radio.

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

    from lgtc_ros.plots import save_figure

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
    return save_figure(fig, path)


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




# ----------------------------------------------------------------------------- the radio: on against off

RADIO_MODEL = "models/lgtc_paper_10x4.pt"
"""The shipped LGTC model (trained at N = 10, M = 4), the one the issue asks about."""
RADIO_AGENTS = (10, 50, 100)
RADIO_CONSUMERS = 4
RADIO_SEED = 2000
"""Fig. 4's seed: at 30 episodes the radio-on column is Fig. 4's LGTC points, a check for free."""


class _Deaf:
    """A world as an agent sees it with the radio off: `observe()` reports no neighbour at all
    (the mask all False); everything else, its step, rewards and collisions, is the world's."""

    def __init__(self, world):
        self._world = world

    def __getattr__(self, name: str):
        return getattr(self._world, name)

    def observe(self):
        obs = self._world.observe()
        return dataclasses.replace(obs, neighbours=torch.zeros_like(obs.neighbours))


class RadioOff:
    """`policy` flown with the radio off: it is handed the world through `_Deaf`, so no
    neighbour's message is ever heard. For a `LearnedPolicy` that removes both channels a drone
    has to the others: the graph filter's S Psi and S x, and the crowding feature (the neighbours'
    message positions). Wrapping the observation, not the network, keeps every model kind (and
    the batched evaluator) exactly as they fly with the radio on."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, world) -> torch.Tensor:
        return self.policy(_Deaf(world))


def _paired_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """mean(a - b) over the same episodes, its standard error and a 95 % t interval."""
    from scipy import stats as st

    from lgtc_ros.reproduce import paired

    d, se = paired(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    half = float(st.t.ppf(0.975, len(a) - 1)) * se if len(a) > 1 else math.nan
    return d, se, d - half, d + half


def _mean_ci(a: np.ndarray) -> tuple[float, float]:
    """Half-width of the 95 % t interval of mean(a)."""
    from scipy import stats as st

    a = np.asarray(a, dtype=float)
    if a.size < 2:
        return float(a.mean()), math.nan
    return float(a.mean()), float(st.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))


def _arm(stats) -> dict:
    return {"returns": [float(v) for v in stats.returns], "collisions": [int(v) for v in stats.collisions],
            "collision_term": [float(v) for v in stats.term_returns["collision"]],
            "demand_satisfied_pct": [float(v) for v in stats.demand_satisfied_pct]}


def _compare(row: dict, a: str, b: str) -> None:
    """The paired a-minus-b fields of a row (arms a and b flew the same episodes)."""
    ra, rb = np.array(row[a]["returns"]), np.array(row[b]["returns"])
    d, se, lo, hi = _paired_ci(ra, rb)
    row[f"diff_{a}_{b}"] = {"mean": d, "se": se, "lo": lo, "hi": hi}
    ca, cb = np.array(row[a]["collisions"], dtype=float), np.array(row[b]["collisions"], dtype=float)
    d, se, lo, hi = _paired_ci(ca, cb)
    row[f"collision_diff_{a}_{b}"] = {"mean": d, "se": se, "lo": lo, "hi": hi}
    # the return without eq. (2)'s collision term: what the arms differ by beyond collisions
    d, se, lo, hi = _paired_ci(ra - np.array(row[a]["collision_term"]), rb - np.array(row[b]["collision_term"]))
    row[f"diff_{a}_{b}_without_collision_term"] = {"mean": d, "se": se, "lo": lo, "hi": hi}


def _paired_cases(model, base, agents, consumers: int, episodes: int, seed: int):
    """(N, the N-agent variant of `base`, its row's identifying keys) for each N of `agents`: the
    two arms of a row fly the same seeded episodes, so a paired interval needs >= 2 of them."""
    from lgtc_ros.sweep import variant

    if episodes < 2:
        raise ValueError(f"episodes = {episodes}: a paired interval needs >= 2")
    base = _scenario(base)
    for n in agents:
        yield n, variant(base, int(n), int(consumers)), {
            "model": str(model), "agents": int(n), "consumers": int(consumers), "episodes": int(episodes),
            "seed": int(seed)}


def radio_on_off(model: str | Path = RADIO_MODEL, agents: Iterable[int] = RADIO_AGENTS,
                 consumers: int = RADIO_CONSUMERS, episodes: int = 30, seed: int = RADIO_SEED,
                 base: Scenario | str | Path = "paper_10x4",
                 progress: Callable[[str], None] | None = None) -> list[dict]:
    """The per-agent return of a learned policy with the radio on against off, per team size N.

    Why: the earlier per-drone measurement lost only ~12 points of return with the radio off and
    nothing measurable to 50 % loss or 5 ticks of latency; this asks whether that holds where
    consensus should matter most, at N far beyond the N = 10 of training (`sweep.variant` of
    `base`: same gains and randomization, N agents, M = `consumers`).

    How: the batched evaluator (`evaluate.rollout`, as `lgtc eval` and Fig. 4 fly) on the same
    `episodes` seeded episodes for both arms; "off" is `RadioOff(policy)`: the neighbour mask the
    policy receives is all False at every step, so the graph filter's S Psi, S x and the
    crowding feature are zero. The world itself (rewards, collisions) is the same in both.

    Row per N: agents, consumers, episodes, seed, "on" / "off" (per-episode returns, collisions,
    collision_term (eq. (2)'s collision term of the return), demand_satisfied_pct), diff_on_off
    (paired mean of on - off, SE, 95 % t interval), diff_on_off_without_collision_term (the same
    for the return less its collision term), collision_diff_on_off (the same for collisions per
    episode), ratio_off_on (mean off / mean on with a 95 % paired bootstrap interval; None when
    the mean "on" return is <= 0).
    """
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy
    from lgtc_ros.reproduce import ratio_ci

    rows = []
    for n, scenario, row in _paired_cases(model, base, agents, consumers, episodes, seed):
        for arm in ("on", "off"):
            if progress:
                progress(f"radio {arm}: N = {n}, M = {consumers}, {episodes} episodes")
            policy = LearnedPolicy.load(model, scenario, allow_consumer_change=True)
            stats, _ = rollout(scenario, policy if arm == "on" else RadioOff(policy), episodes, seed=seed)
            row[arm] = _arm(stats)
        _compare(row, "on", "off")
        on, off = np.array(row["on"]["returns"]), np.array(row["off"]["returns"])
        row["ratio_off_on"] = list(ratio_ci(off, on)) if on.mean() > 0 else None
        rows.append(row)
    return rows


def radio_runtime(model: str | Path = RADIO_MODEL, seeds: Iterable[int] = range(RADIO_SEED, RADIO_SEED + 30),
                  agents: int = 10, consumers: int = RADIO_CONSUMERS, cbfs: Iterable[str] = ("decentralized", "off"),
                  base: Scenario | str | Path = "paper_10x4",
                  progress: Callable[[str], None] | None = None) -> list[dict]:
    """The radio on against off through the per-drone runtime (`SwarmRuntime`, as `lgtc sim
    --runtime` flies), with its safety filter as flown (`cbf` "decentralized") and without it.

    Why: the earlier runtime measurement found the radio off nearly free, the batched evaluator
    (`radio_on_off`, no safety filter) finds it ruinous. The runtime's CBF avoids neighbours from
    their poses (sensing, not the radio), so it may do what the policy's crowding feature does
    with the radio on. "Off" drops every message (`RadioConfig.drop_prob` = 1); world and radio
    seeded by the episode's seed, the same for both arms. One row per CBF setting, fields as in
    `radio_on_off` ("on"/"off" arms of the `seeds` episodes, diff_on_off, collision_diff_on_off).
    """
    from lgtc_ros.runtime.drone import load_drone_modules
    from lgtc_ros.runtime.radio import RadioConfig
    from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime
    from lgtc_ros.sweep import variant

    scenario = variant(_scenario(base), int(agents), int(consumers))
    drones, _ = load_drone_modules(model, scenario, scenario.n_agents)
    seeds = [int(s) for s in seeds]
    rows = []
    for cbf in cbfs:
        row: dict[str, Any] = {"model": str(model), "agents": int(agents), "consumers": int(consumers), "cbf": cbf,
                               "episodes": len(seeds), "seeds": seeds}
        for arm, drop in (("on", 0.0), ("off", 1.0)):
            if progress:
                progress(f"runtime, cbf {cbf}, radio {arm}: N = {agents}, {len(seeds)} episodes")
            parts = [SwarmRuntime(scenario, config=RuntimeConfig(cbf=cbf, radio=RadioConfig(drop_prob=drop, seed=seed)),
                                  seed=seed, drones=drones).run().stats for seed in seeds]
            row[arm] = {"returns": [float(p.returns[0]) for p in parts],
                        "collisions": [int(p.collisions[0]) for p in parts],
                        "collision_term": [float(p.term_returns["collision"][0]) for p in parts],
                        "demand_satisfied_pct": [float(p.demand_satisfied_pct[0]) for p in parts]}
        _compare(row, "on", "off")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- is the graph filter used


def _unfrozen_step(policy):
    """The LGTC actor of a loaded `LearnedPolicy` as an unscripted `DroneStep`, whose layers
    forward hooks reach and whose `core` can be called with S = 0.

    A trainer output already is one. An exported model is frozen TorchScript (weights inlined as
    constants of its graphs): the weights are read off its `batched` graph, whose `aten::linear`
    calls run in `LGTC.core`'s order (phi1, phi2, rel1, rel2, psi, B0, B1, A0, A1, W, then the
    final MLP), and eq. (6)'s constants as `certificate` reads them. Checked, not trusted: the
    rebuilt step must give the exported step's outputs on random inputs (1e-5), else ValueError.
    """
    from lgtc_ros.policy.certificate import _graph_constants
    from lgtc_ros.policy.export import DroneStep
    from lgtc_ros.policy.heads import ActorCritic, HeadConfig
    from lgtc_ros.policy.lgtc import LGTCConfig

    step = policy.step
    if isinstance(step, DroneStep):
        if not step.cell.consensus:
            raise ValueError(f"{policy.name}: no consensus state (not an LGTC model)")
        return step
    if not policy.meta.get("consensus"):
        raise ValueError(f"{policy.name}: no consensus state (not an LGTC model): no graph filter state to measure")
    linears = []
    for node in step.batched.graph.nodes():
        if node.kind() == "aten::linear":
            w, b = list(node.inputs())[1:3]
            weight = w.toIValue()
            bias = b.toIValue() if b.node().kind() == "prim::Constant" else None
            linears.append((weight, bias))
    cfg = LGTCConfig(**{k: v for k, v in policy.meta["lgtc"].items() if k in LGTCConfig.__dataclass_fields__})
    hidden = tuple(int(w.shape[0]) for w, _ in linears[15:-1])
    model = ActorCritic(cfg, HeadConfig(hidden=hidden))
    cell, head = model.actor, model.actor_head
    targets = [cell.phi1[0], cell.phi1[2], cell.phi2[0], cell.phi2[2], cell.rel1[0], cell.rel1[2], cell.rel2[0],
               cell.rel2[2], cell.psi[0], cell.psi[2], cell.B0, cell.B1, cell.A0, cell.A1, cell.W,
               *[m for m in head if isinstance(m, torch.nn.Linear)]]
    if len(linears) != len(targets):
        raise ValueError(f"{policy.name}: {len(linears)} linear layers in the exported graph, expected {len(targets)}")
    with torch.no_grad():
        for layer, (w, b) in zip(targets, linears):
            if layer is targets[-1]:  # the exported head keeps only the mean rows
                layer.weight.zero_(), layer.bias.zero_()
                layer.weight[:w.shape[0]] = w
                layer.bias[:w.shape[0]] = b
                continue
            if layer.weight.shape != w.shape or (layer.bias is None) != (b is None):
                raise ValueError(f"{policy.name}: exported layer of shape {tuple(w.shape)} does not fit {layer}")
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
    rebuilt = DroneStep(model.eval(), float(step.v_max)).eval()
    a, leak, b_f = (t.detach().clone() for t in _graph_constants(step))
    rebuilt.ode_a, rebuilt.ode_leak, rebuilt.ode_bf = a, leak, b_f
    rebuilt.fused_step = False  # the per-drone forward through `core` too (the fused copy holds init weights)
    _check_rebuilt(step, rebuilt, cfg, policy.name)
    return rebuilt


def _check_rebuilt(exported, rebuilt, cfg, name: str) -> None:
    g = torch.Generator().manual_seed(0)
    b, n, m, r = 3, 6, 4, cfg.n_resources
    args = (torch.rand(b, n, 2, generator=g) * 2 - 1, torch.rand(b, n, r, generator=g) * 0.4,
            torch.rand(b, m, 2, generator=g) * 2 - 1, torch.rand(b, m, r, generator=g),
            (torch.arange(r) >= r // 2).float(), torch.rand(b, n, cfg.state_dim, generator=g) * 2 - 1,
            torch.rand(b, n, 2, generator=g) * 2 - 1, torch.randn(b, n, cfg.feature_dim, generator=g),
            torch.rand(b, n, n, generator=g) > 0.3)
    with torch.no_grad():
        want, got = exported.batched(*args), rebuilt.batched(*args)
    for label, u, v in zip(("velocity", "x", "psi", "attention"), want, got):
        if not torch.allclose(u, v, atol=1e-5, rtol=1e-5):
            raise ValueError(f"{name}: the step rebuilt from the exported graph differs in {label} by "
                             f"{float((u - v).abs().max()):.3g}: the graph's layer order is not LGTC.core's")


class _FilterProbe:
    """A `LearnedPolicy`'s step (`DroneStep.batched`'s signature) that flies an unfrozen LGTC
    step either as trained (`mode` "on") or with the graph filter cut (`mode` "filter_off":
    S Psi = S x = 0, the crowding feature still from the neighbours), and in mode "on" measures,
    at every step and for every agent that flies (`active`, set by `_FilterMeter`), how large the
    neighbour terms inside the cell are and how much the action would change without them.

    Read-only: forward hooks on the cell's layers copy their outputs; the counterfactual actions
    are extra calls of `LGTC.core` whose results only enter the statistics."""

    LAYERS = ("B0", "B1", "A0", "A1", "phi2", "W")

    def __init__(self, step, mode: str = "on"):
        if mode not in ("on", "filter_off"):
            raise ValueError(f"mode = {mode!r}: on or filter_off")
        self.step, self.mode = step, mode
        self.state_dim, self.feature_dim = step.state_dim, step.feature_dim
        self.active: torch.Tensor | None = None
        self.seen: dict[str, torch.Tensor] = {}
        self._capture = False
        cell = step.cell
        for name in self.LAYERS:
            getattr(cell, name).register_forward_hook(self._hook(name))
        self.sums: dict[str, float] = {}
        self.vec: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def keep(module, inputs, output):
            if self._capture:
                self.seen[name] = output.detach()
                self.seen[name + "_in"] = inputs[0].detach()
        return keep

    def _add(self, key: str, value) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def _moments(self, key: str, rows: torch.Tensor) -> None:
        """Sums for the variance over every (agent, step) sample of a [K, G] term."""
        rows = rows.double()
        for suffix, v in (("s1", rows.sum(0)), ("s2", (rows * rows).sum(0))):
            k = f"{key}_{suffix}"
            self.vec[k] = self.vec[k] + v if k in self.vec else v

    def _core(self, pos, supply, consumer_pos, demand, kinds, x, agg_psi, agg_x, crowd):
        s = self.step
        y, x_new, psi, aux = s.cell.core(pos, supply, consumer_pos.unsqueeze(1), demand.unsqueeze(1), kinds, x,
                                         agg_psi, agg_x, crowd, (s.ode_a, s.ode_leak, s.ode_bf))
        return s._velocity(y), x_new, psi, aux["attention"]

    def batched(self, pos, supply, consumer_pos, demand, kinds, x, pos_msg, psi_prev, neighbours):
        from lgtc_ros.policy.lgtc import crowding

        s = self.step
        mask = neighbours.to(pos.dtype)
        crowd = crowding(pos.unsqueeze(2) - pos_msg.unsqueeze(1), mask, s.crowd_radius)
        zero_psi, zero_x = torch.zeros_like(psi_prev), torch.zeros_like(x)
        if self.mode == "filter_off":
            return self._core(pos, supply, consumer_pos, demand, kinds, x, zero_psi, zero_x, crowd)
        self._capture = True
        try:
            out = s.batched(pos, supply, consumer_pos, demand, kinds, x, pos_msg, psi_prev, neighbours)
        finally:
            self._capture = False
        cut = self._core(pos, supply, consumer_pos, demand, kinds, x, zero_psi, zero_x, crowd)
        deaf = self._core(pos, supply, consumer_pos, demand, kinds, x, zero_psi, zero_x, torch.zeros_like(crowd))
        self._measure(out, cut, deaf, mask)
        return out

    def _measure(self, out, cut, deaf, mask) -> None:
        seen, act = self.seen, self.active
        if act is None:
            act = torch.ones(mask.shape[:2], dtype=torch.bool)
        heard = mask.sum(-1)[act]
        q_nb = (seen["B1"] + seen["A1"])[act]  # the graph filter's share of the attention query's pre-activation
        q_self = (seen["B0"] + seen["phi2"].mean(-2) + seen["A0"])[act]  # own features, consumers, own state
        d_nb = seen["B1"][act]                 # ... of Delta (it also enters y)
        d_self = (seen["B0"] + seen["phi2"].mean(-2))[act]
        f = torch.relu(seen["W"])[act]
        ode_nb = (seen["A1_in"] @ self.step.ode_a)[act]  # (S x) A in the ODE's drive
        ode_self = (f * self.step.ode_bf)                  # f o B_f
        norm = lambda t: torch.linalg.vector_norm(t.double(), dim=-1)  # noqa: E731
        v_max = float(self.step.v_max)
        dv_cut = norm(out[0] - cut[0])[act] / v_max
        dv_deaf = norm(out[0] - deaf[0])[act] / v_max
        flips = (out[3].argmax(-1) != cut[3].argmax(-1))[act]
        some = heard > 0
        self._add("samples", act.sum())
        self._add("with_neighbour", some.sum())
        self._add("heard", heard.sum())
        for key, t in (("q_nb", norm(q_nb)), ("q_self", norm(q_self)), ("d_nb", norm(d_nb)), ("d_self", norm(d_self)),
                       ("ode_nb", norm(ode_nb)), ("ode_self", norm(ode_self)), ("dv_cut", dv_cut),
                       ("dv_deaf", dv_deaf), ("flips", flips), ("speed", norm(out[0])[act] / v_max)):
            self._add(key, t.sum())
            self._add(key + "_nb", t[some].sum())  # over the agents that heard someone
        self._add("q_ratio", (norm(q_nb) / norm(q_self).clamp_min(1e-12)).sum())
        self._moments("q_nb", q_nb)
        self._moments("q_self", q_self)

    def summary(self) -> dict:
        s = self.sums
        k, k_nb = max(s.get("samples", 0.0), 1.0), max(s.get("with_neighbour", 0.0), 1.0)

        def variance(key: str) -> float:
            m1, m2 = self.vec[f"{key}_s1"] / k, self.vec[f"{key}_s2"] / k
            return float((m2 - m1 * m1).clamp_min(0).sum())

        out = {"agent_steps": int(s.get("samples", 0)), "frac_with_neighbour": s.get("with_neighbour", 0.0) / k,
               "mean_heard": s.get("heard", 0.0) / k, "query_ratio_mean": s.get("q_ratio", 0.0) / k,
               "query_std_ratio": math.sqrt(variance("q_nb") / max(variance("q_self"), 1e-30))}
        for key in ("q_nb", "q_self", "d_nb", "d_self", "ode_nb", "ode_self", "dv_cut", "dv_deaf", "flips", "speed"):
            out[key] = s.get(key, 0.0) / k
            out[key + "_with_neighbour"] = s.get(key + "_nb", 0.0) / k_nb
        return out


class _FilterMeter:
    """Hands the probe the agents that fly at each step (landed ones keep their state)."""

    def __init__(self, policy, probe: _FilterProbe):
        self.policy, self.probe = policy, probe

    def reset(self) -> None:
        self.policy.reset()

    def __call__(self, world) -> torch.Tensor:
        self.probe.active = world.active.clone()
        return self.policy(world)


def graph_filter_usage(model: str | Path = RADIO_MODEL, agents: Iterable[int] = RADIO_AGENTS,
                       consumers: int = RADIO_CONSUMERS, episodes: int = 30, seed: int = RADIO_SEED,
                       base: Scenario | str | Path = "paper_10x4",
                       progress: Callable[[str], None] | None = None) -> list[dict]:
    """Is the 1-hop graph filter used at all? Per team size N, on the radio-on rollouts of
    `radio_on_off` (same scenario variants, episodes and seed):

    - how often an agent hears anyone: frac_with_neighbour (agent-steps with >= 1 neighbour
      whose message arrived), mean_heard (neighbours heard per agent-step);
    - how large the neighbour terms are inside the cell, as mean vector norms per agent-step:
      q_nb = B1 (S Psi) + A1 (S x) against q_self = B0 Psi + mean_m Phi_m + A0 x + biases (the
      attention query's pre-activation, q_nb + q_self); query_ratio_mean = mean |q_nb| / |q_self|;
      query_std_ratio = sqrt(total variance of q_nb / of q_self) over the samples (a neighbour
      mean that barely varies acts as a bias, whatever its size); d_nb = B1 (S Psi) against d_self
      in Delta; ode_nb = (S x) A against ode_self = f o B_f in the state ODE's drive;
    - what they do, one step at a time on the same inputs: dv_cut = |v - v(S = 0)| / v_max with
      the crowding kept, dv_deaf with crowding also zero (radio off for that step), flips (the
      attention's argmax, the chosen consumer, changes with S = 0), against speed = |v| / v_max;
      each also `_with_neighbour` (mean over the agent-steps that heard someone);
    - closed loop: the return flown with the filter cut for the whole episode (S = 0, crowding
      kept) paired with the return of the same unfrozen step as trained ("probe", which must
      match the exported model's "on" return up to float noise): diff_probe_filter_off.

    The network flown is `_unfrozen_step` of the model (for an exported file: rebuilt from its
    frozen graph and checked against it).
    """
    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy

    rows = []
    for n, scenario, row in _paired_cases(model, base, agents, consumers, episodes, seed):
        loaded = LearnedPolicy.load(model, scenario, allow_consumer_change=True)
        step = _unfrozen_step(loaded)
        for mode, arm in (("on", "probe"), ("filter_off", "filter_off")):
            if progress:
                progress(f"graph filter {mode}: N = {n}, M = {consumers}, {episodes} episodes")
            probe = _FilterProbe(step, mode)
            policy = LearnedPolicy(probe, loaded.name, loaded.meta)
            stats, _ = rollout(scenario, _FilterMeter(policy, probe), episodes, seed=seed)
            row[arm] = _arm(stats)
            if mode == "on":
                row["usage"] = probe.summary()
        _compare(row, "probe", "filter_off")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- S = 0 during training


def zero_s_ablation(run: str | Path, baseline_log: str | Path, baseline_eval: str | Path | None = None,
                    episodes: int = 100, seed: int = 1000, window: int = 5) -> dict:
    """A run trained with S = 0 (`--set zero_s=true`) against a run trained as usual.

    Why: if consensus through neighbours adds little, a policy that never hears a neighbour's
    message during training should learn about as well. Compared where both runs have data:
    the training return (the trainer's log, mean over the last `window` updates up to the
    ablation's last env-step, and the smoothed curves), and the final policy evaluated as `lgtc
    eval` / `lgtc reproduce` do (`episodes` episodes of paper_10x4 from `seed`), paired with the
    baseline's per-episode evaluation (`baseline_eval`, a `reproduce` evals CSV; same episodes)
    when given: that file names the env-step count it was evaluated at, which may differ.
    """
    import csv

    from lgtc_ros.evaluate import rollout
    from lgtc_ros.policy.learned import LearnedPolicy

    run = Path(run)
    if not LearnedPolicy.load(run / "policy.pt", _scenario("paper_10x4")).step.cell.cfg.zero_s:
        raise ValueError(f"{run}: not trained with zero_s = true")

    def log(path: Path) -> tuple[np.ndarray, np.ndarray]:
        with Path(path).open() as fh:
            rows = list(csv.DictReader(fh))
        return (np.array([float(r["env_steps"]) for r in rows]),
                np.array([float(r["episode_return"]) if r["episode_return"] not in ("", "nan") else np.nan
                          for r in rows]))

    steps, ret = log(run / "train_log.csv")
    b_steps, b_ret = log(Path(baseline_log))
    end = steps[-1]
    if b_steps[-1] < end:
        raise ValueError(f"{baseline_log} ends at {b_steps[-1]:.0f} env-steps, before the ablation's {end:.0f}")
    last = lambda s, r: float(np.nanmean(r[(s <= end)][-window:]))  # noqa: E731
    scenario = _scenario("paper_10x4")
    stats, _ = rollout(scenario, LearnedPolicy.load(run / "policy.pt", scenario), episodes, seed=seed)
    out = {"run": str(run), "baseline_log": str(baseline_log), "env_steps": int(end), "window": int(window),
           "train_return_zero_s": last(steps, ret), "train_return_baseline": last(b_steps, b_ret),
           "curve_steps": steps.tolist(), "curve_zero_s": ret.tolist(),
           "curve_baseline": b_ret[b_steps <= end].tolist(),
           "eval": {"episodes": int(episodes), "seed": int(seed), **_arm(stats)}}
    if baseline_eval is not None:
        text = Path(baseline_eval).read_text().splitlines()
        head = dict(kv.split("=") for kv in text[0].lstrip("# ").split())
        base = np.array([float(line.split(",")[1]) for line in text[2:] if line.strip()])
        if int(head["seed"]) != seed or base.size != episodes:
            raise ValueError(f"{baseline_eval}: {base.size} episodes from seed {head['seed']}, not {episodes} from {seed}")
        d, se, lo, hi = _paired_ci(np.array(stats.returns), base)
        out["baseline_eval"] = {"file": str(baseline_eval), "env_steps": int(head["env_steps"]),
                                "return": float(base.mean()), "diff": {"mean": d, "se": se, "lo": lo, "hi": hi}}
    return out


# ----------------------------------------------------------------------------- the report


def _ci(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def radio_markdown(rows: list[dict], usage: list[dict] | None = None, ablation: dict | None = None,
                   runtime: list[dict] | None = None) -> str:
    """The tables of the radio study: on against off (batched, and through the per-drone runtime),
    the graph filter's use, the S = 0 run."""
    def mean_pm(v) -> str:
        m, h = _mean_ci(np.array(v, dtype=float))
        return f"{m:.3f} ± {h:.3f}"

    lines = ["| N | M | episodes | return, radio on | return, radio off | on − off (95 % CI) | off / on (95 % CI) "
             "| on − off without the collision term (95 % CI) | collisions / episode, on | off "
             "| on − off collisions (95 % CI) | demand satisfied %, on | off |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio_off_on"] is None else "{:.3f} [{:.3f}, {:.3f}]".format(*r["ratio_off_on"])
        lines.append(f"| {r['agents']} | {r['consumers']} | {r['episodes']} | {mean_pm(r['on']['returns'])} "
                     f"| {mean_pm(r['off']['returns'])} | {_ci(r['diff_on_off'])} | {ratio} "
                     f"| {_ci(r['diff_on_off_without_collision_term'])} | {np.mean(r['on']['collisions']):.2f} | {np.mean(r['off']['collisions']):.2f} "
                     f"| {_ci(r['collision_diff_on_off'])} | {np.mean(r['on']['demand_satisfied_pct']):.1f} "
                     f"| {np.mean(r['off']['demand_satisfied_pct']):.1f} |")
    lines += ["", "Returns: mean per-agent return ± the 95 % t half-width of the mean; differences paired over "
              "the same episodes (95 % t interval); the ratio's interval is a paired bootstrap "
              "(`reproduce.ratio_ci`)."]
    if runtime:
        lines += ["", "| per-drone runtime: CBF | N | episodes | return, radio on | radio off | on − off (95 % CI) "
                  "| on − off without the collision term (95 % CI) | collisions / episode, on | off |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in runtime:
            lines.append(f"| {r['cbf']} | {r['agents']} | {r['episodes']} | {mean_pm(r['on']['returns'])} "
                         f"| {mean_pm(r['off']['returns'])} | {_ci(r['diff_on_off'])} "
                         f"| {_ci(r['diff_on_off_without_collision_term'])} "
                         f"| {np.mean(r['on']['collisions']):.2f} | {np.mean(r['off']['collisions']):.2f} |")
    if usage:
        lines += ["", "| N | agent-steps with ≥ 1 neighbour heard | neighbours heard | query: \\|neighbour\\| / "
                  "\\|own\\| (mean ratio) | query: std ratio | Δ: \\|B1 SΨ\\| vs \\|own\\| | ODE: \\|(Sx)A\\| vs "
                  "\\|f∘B_f\\| | one step without S: \\|Δv\\|/v_max | … radio off: \\|Δv\\|/v_max | … chosen consumer "
                  "changes | \\|v\\|/v_max |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in usage:
            u = r["usage"]
            lines.append(f"| {r['agents']} | {100 * u['frac_with_neighbour']:.1f} % | {u['mean_heard']:.1f} "
                         f"| {u['q_nb']:.2f} / {u['q_self']:.2f} ({u['query_ratio_mean']:.2f}) "
                         f"| {u['query_std_ratio']:.2f} | {u['d_nb']:.2f} vs {u['d_self']:.2f} "
                         f"| {u['ode_nb']:.1e} vs {u['ode_self']:.2f} | {u['dv_cut']:.3f} | {u['dv_deaf']:.3f} "
                         f"| {100 * u['flips']:.1f} % | {u['speed']:.2f} |")
        lines += ["", "| N | episodes | return, as trained (unfrozen copy) | return, graph filter cut (S = 0, "
                  "crowding kept) | as trained − cut (95 % CI) | … without the collision term | collisions / episode, "
                  "as trained | cut |", "|---|---|---|---|---|---|---|---|"]
        for r in usage:
            lines.append(f"| {r['agents']} | {r['episodes']} | {mean_pm(r['probe']['returns'])} "
                         f"| {mean_pm(r['filter_off']['returns'])} | {_ci(r['diff_probe_filter_off'])} "
                         f"| {_ci(r['diff_probe_filter_off_without_collision_term'])} "
                         f"| {np.mean(r['probe']['collisions']):.2f} | {np.mean(r['filter_off']['collisions']):.2f} |")
    if ablation:
        a = ablation
        e = np.array(a["eval"]["returns"])
        lines += ["", "| run | env steps | training return (last {} updates) | eval return ({} episodes, seed {}) |"
                  .format(a["window"], a["eval"]["episodes"], a["eval"]["seed"]), "|---|---|---|---|",
                  f"| S = 0 during training | {a['env_steps']:,} | {a['train_return_zero_s']:.3f} "
                  f"| {mean_pm(e)} |",
                  f"| baseline (same recipe and seed) | {a['env_steps']:,} | {a['train_return_baseline']:.3f} | "
                  + (f"not kept at {a['env_steps']:,}; {a['baseline_eval']['return']:.3f} at "
                     f"{a['baseline_eval']['env_steps']:,} env steps (not comparable) |"
                     if "baseline_eval" in a and a["baseline_eval"]["env_steps"] != a["env_steps"] else
                     f"{a['baseline_eval']['return']:.3f}; S = 0 − baseline {_ci(a['baseline_eval']['diff'])} |"
                     if "baseline_eval" in a else "— |")]
    return "\n".join(lines) + "\n"


def radio_plot(rows: list[dict], path: str | Path, usage: list[dict] | None = None,
               ablation: dict | None = None) -> Path:
    """Return over N with the radio on, off (and the graph filter cut), 95 % CI bars; the paired
    differences beside; the S = 0 run's training curve against the baseline's when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtc_ros.plots import save_figure

    panels = 3 if ablation else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.3))
    n = np.array([r["agents"] for r in rows])
    arms = [("radio on", [r["on"]["returns"] for r in rows], "C0", 0.0),
            ("radio off", [r["off"]["returns"] for r in rows], "C3", 1.0)]
    if usage:
        arms.append(("graph filter cut (S = 0),\ncrowding kept", [u["filter_off"]["returns"] for u in usage], "C2", 2.0))
    dx = 0.012 * (n.max() - n.min() + 1)
    for label, values, color, k in arms:
        m, h = zip(*(_mean_ci(np.array(v)) for v in values))
        axes[0].errorbar(n + (k - 1) * dx, m, yerr=h, fmt="o-", color=color, capsize=4, label=label)
    axes[0].set_xlabel("agents N (M = %d; trained at N = 10)" % rows[0]["consumers"])
    axes[0].set_yscale("symlog", linthresh=1.0)  # the radio off is hundreds below; the rest within 1
    axes[0].set_ylabel("per-agent return (mean, 95 % CI; symlog)")
    axes[0].set_xticks(n)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    diffs = [("on − off", [r["diff_on_off"] for r in rows], "C3", 0.0)]
    if usage:
        diffs.append(("as trained − filter cut", [u["diff_probe_filter_off"] for u in usage], "C2", 1.0))
    for label, ds, color, k in diffs:
        m = np.array([d["mean"] for d in ds])
        err = np.array([[d["mean"] - d["lo"] for d in ds], [d["hi"] - d["mean"] for d in ds]])
        axes[1].errorbar(n + (k - 0.5) * dx, m, yerr=err, fmt="o-", color=color, capsize=4, label=label)
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set_xlabel("agents N")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[1].set_ylabel("paired return difference (95 % CI; symlog)")
    axes[1].set_xticks(n)
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    if ablation:
        s = np.array(ablation["curve_steps"])
        for label, key, color in (("S = 0 during training", "curve_zero_s", "C2"), ("baseline", "curve_baseline", "C0")):
            y = np.array(ablation[key], dtype=float)
            smooth = np.array([np.nanmean(y[max(0, i - 4):i + 1]) for i in range(len(y))])
            axes[2].plot(s[:len(y)], y, color=color, alpha=0.25)
            axes[2].plot(s[:len(y)], smooth, color=color, label=label)
        axes[2].set_xlabel("env steps")
        axes[2].set_ylabel("training return (5-update mean)")
        axes[2].legend(fontsize=8)
        axes[2].grid(alpha=0.3)
        axes[2].set_title("lgtc-ippo seed 1, paper_10x4", fontsize=9)
    fig.suptitle(f"{Path(rows[0]['model']).stem}: the radio on against off ({rows[0]['episodes']} episodes a point, "
                 f"seed {rows[0]['seed']})", fontsize=10)
    return save_figure(fig, path)


def radio_report(out_dir: str | Path, episodes: int = 30, model: str | Path = RADIO_MODEL,
                 agents: Iterable[int] = RADIO_AGENTS, ablation_run: str | Path | None = None,
                 baseline_log: str | Path | None = None, baseline_eval: str | Path | None = None,
                 runtime_seeds: Iterable[int] = range(RADIO_SEED, RADIO_SEED + 30),
                 progress: Callable[[str], None] | None = print) -> dict:
    """Every number of docs/reproduction/radio: `radio_on_off`, `radio_runtime` (N = 10; empty
    `runtime_seeds`: left out), `graph_filter_usage` and (with `ablation_run`) `zero_s_ablation`,
    written to out_dir as radio.json, tables.md and radio.png."""
    import json

    out_dir = Path(out_dir)
    agents = tuple(agents)
    rows = radio_on_off(model, agents, episodes=episodes, progress=progress)
    runtime_seeds = list(runtime_seeds)
    runtime = radio_runtime(model, runtime_seeds, progress=progress) if runtime_seeds else None
    usage = graph_filter_usage(model, agents, episodes=episodes, progress=progress)
    ablation = None
    if ablation_run is not None:
        if progress:
            progress(f"S = 0 ablation: evaluating {ablation_run}")
        ablation = zero_s_ablation(ablation_run, baseline_log, baseline_eval)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"radio": rows, "runtime": runtime, "graph_filter": usage, "zero_s": ablation}
    (out_dir / "radio.json").write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / "tables.md").write_text(radio_markdown(rows, usage, ablation, runtime))
    radio_plot(rows, out_dir / "radio.png", usage, ablation)
    return data


__all__ = ["RadioOff", "discharge_distribution", "discharge_markdown", "discharge_plot", "discharge_stats",
           "graph_filter_usage", "radio_markdown", "radio_on_off", "radio_plot", "radio_report", "radio_runtime",
           "seeded_starts", "state_range", "zero_s_ablation"]
