"""Rollouts of any policy (or the expert) on a scenario, with the metrics every report uses.

A policy is any callable `policy(world) -> action [B,N,2]` (arena units/s) with an optional
`reset()`; it may read the full world (the expert) or only `world.observe()` (learned policies).

Per-episode metrics:
- return: per-agent return (sum over steps, mean over agents), total and per eq. (2) term;
- demand_satisfied_pct: instantaneous demand released + persistent demand covered at the end,
  over the satisfiable demand at reset (`resources.satisfiable_demand`), in percent;
- collisions: pairs of active agents that come closer than `safety_radius` (counted once per
  approach: a rising edge), and the smallest pair distance seen;
- time_to_cover_s: first time every consumer the team can still serve (an open need of a type
  some active agent carries) has an agent releasing there (NaN: never).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from lgtc_ros.scenario import Scenario
from lgtc_ros.world import TERMS, World
from lgtc_ros.world.env import clip_speed
from lgtc_ros.world.resources import satisfiable_demand


class Policy(Protocol):
    def __call__(self, world: World) -> Tensor: ...


class RandomPolicy:
    """Uniform random velocities in the disk of radius v_max (a floor for every comparison)."""

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, world: World) -> Tensor:
        b, n = world.active.shape
        v_max = world.scenario.v_max
        raw = (torch.rand(b, n, 2, generator=self.gen) * 2 - 1) * v_max
        return clip_speed(raw, v_max)


@dataclass
class Trace:
    """Per-step record of one env (the first episode), for CSV and plots. Arrays are [T, ...]."""

    pos: list[np.ndarray] = field(default_factory=list)
    vel: list[np.ndarray] = field(default_factory=list)
    supply: list[np.ndarray] = field(default_factory=list)
    demand: list[np.ndarray] = field(default_factory=list)
    active: list[np.ndarray] = field(default_factory=list)
    assign: list[np.ndarray] = field(default_factory=list)
    terms: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in TERMS})
    consumer_pos: np.ndarray | None = None


@dataclass
class EpisodeStats:
    """One value per episode for every metric."""

    returns: np.ndarray                 # [K]
    term_returns: dict[str, np.ndarray]  # name -> [K]
    demand_satisfied_pct: np.ndarray    # [K]
    collisions: np.ndarray              # [K]
    min_distance: np.ndarray            # [K]
    time_to_cover_s: np.ndarray         # [K], NaN if never

    def summary(self) -> dict[str, float]:
        """Means (and stds) over episodes; the keys `lgtc sim --json` and `lgtc eval --json` print."""
        def mean(x):
            return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

        out = {
            "episodes": int(self.returns.size),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "demand_satisfied_pct": float(self.demand_satisfied_pct.mean()),
            "demand_satisfied_pct_min": float(self.demand_satisfied_pct.min()),
            "collisions_mean": float(self.collisions.mean()),
            "collisions_total": int(self.collisions.sum()),
            "min_distance": float(self.min_distance.min()),
            "time_to_cover_s": mean(self.time_to_cover_s),
            "covered_fraction": float(np.isfinite(self.time_to_cover_s).mean()),
        }
        out.update({f"return_{k}": float(v.mean()) for k, v in self.term_returns.items()})
        return out


def rollout(scenario: Scenario, policy: Policy, episodes: int, seed: int = 0, max_envs: int = 64,
            trace: bool = False, progress: Callable[[int], None] | None = None,
            world_factory: Callable[..., World] = World,
            on_step: Callable[[int], None] | None = None) -> tuple[EpisodeStats, Trace | None]:
    """Run `episodes` full episodes, `max_envs` at a time. `progress(k)` is told of finished episodes;
    `on_step(b)` of every simulation step of `b` parallel episodes (for a progress bar that moves:
    a batch of 64 episodes finishes all at once, after `episode_steps` steps)."""
    batches, stats, rec = [], [], Trace() if trace else None
    remaining = episodes
    world = None
    while remaining > 0:
        b = min(remaining, max_envs)
        if world is None or world.n_envs != b:
            world = world_factory(scenario, n_envs=b, seed=seed + len(batches) * 7919)
        else:
            world.reset()
        if hasattr(policy, "reset"):
            policy.reset()
        stats.append(_run_episode(world, policy, rec if not batches else None, on_step))
        batches.append(b)
        remaining -= b
        if progress:
            progress(b)
    return _merge(stats), rec


class EpisodeMeter:
    """Accumulates the episode metrics of every env of a `World`, one `update` per step.

    The batched evaluator and the per-drone runtime both feed it, so their numbers mean the same.
    """

    def __init__(self, world: World):
        b, n = world.active.shape
        self.world = world
        persistent = world.persistent.numpy()
        self.satisfiable = np.array([satisfiable_demand(world.supply0[e].double().numpy(),
                                                        world.need0[e].double().numpy(), persistent)
                                     for e in range(b)])
        self.term_sum = {k: torch.zeros(b, n) for k in TERMS}
        self.close_prev = torch.zeros(b, n, n, dtype=torch.bool)
        self.collisions = torch.zeros(b, dtype=torch.long)
        self.min_dist = torch.full((b,), math.inf)
        self.cover_time = torch.full((b,), math.nan)
        self.upper = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)

    def update(self, out) -> None:
        """After `world.step`: `out` is its StepResult."""
        w, s = self.world, self.world.scenario
        for k in TERMS:
            self.term_sum[k] += out.terms[k]
        # distances of the pairs of active agents, each pair once; inf elsewhere (never close)
        pd = out.info["pair_dist"].masked_fill(~(w.active[:, :, None] & w.active[:, None, :] & self.upper), math.inf)
        close = pd < s.safety_radius
        self.collisions += (close & ~self.close_prev).sum((1, 2))
        self.close_prev = close
        self.min_dist = torch.minimum(self.min_dist, pd.amin((1, 2)))
        # only consumers the team can still serve: an open need of a type some active agent carries
        team_has = ((w.supply > 0) & w.active[..., None]).any(1)  # [B,r]
        demanding = ((w.need > 0) & team_has[:, None, :]).any(-1)
        all_in = (out.info["attended"] | ~demanding).all(-1)
        newly = all_in & torch.isnan(self.cover_time)
        if newly.any():  # (a masked write costs more than the check; most steps have none)
            self.cover_time[newly] = w.t[newly].float() * s.dt

    def finish(self) -> EpisodeStats:
        w = self.world
        b, n = w.active.shape
        released = ((w.need0 - w.need).clamp_min(0) * w.instantaneous).sum((1, 2))
        covered = ((w.need - w.demand) * w.persistent).sum((1, 2))
        delivered = (released + covered).double().numpy()
        pct = 100.0 * np.divide(delivered, self.satisfiable, out=np.full(b, 100.0), where=self.satisfiable > 1e-9)
        per_agent = {k: (v.sum(1) / n).double().numpy() for k, v in self.term_sum.items()}
        return EpisodeStats(
            returns=sum(per_agent.values()), term_returns=per_agent,
            demand_satisfied_pct=np.minimum(pct, 100.0), collisions=self.collisions.numpy(),
            min_distance=self.min_dist.numpy(), time_to_cover_s=self.cover_time.numpy(),
        )


def _run_episode(world: World, policy: Policy, rec: Trace | None,
                 on_step: Callable[[int], None] | None = None) -> EpisodeStats:
    meter = EpisodeMeter(world)
    if rec is not None:
        rec.consumer_pos = world.consumer_pos[0].numpy().copy()
    for _ in range(world.scenario.episode_steps):
        with torch.no_grad():
            action = policy(world)
        if rec is not None:
            _record(rec, world, action)
        out = world.step(action)
        meter.update(out)
        if on_step is not None:
            on_step(world.n_envs)
        if rec is not None:
            for k in TERMS:
                rec.terms[k].append(out.terms[k][0].numpy().copy())
    return meter.finish()


def _record(rec: Trace, world: World, action: Tensor) -> None:
    rec.pos.append(world.pos[0].numpy().copy())
    rec.vel.append((clip_speed(action[0], world.scenario.v_max) * world.active[0, :, None]).numpy().copy())
    rec.supply.append(world.supply[0].numpy().copy())
    rec.demand.append(world.demand[0].numpy().copy())
    rec.active.append(world.active[0].numpy().copy())
    rec.assign.append(world.assign[0].numpy().copy())


def _merge(parts: list[EpisodeStats]) -> EpisodeStats:
    cat = np.concatenate
    return EpisodeStats(
        returns=cat([p.returns for p in parts]),
        term_returns={k: cat([p.term_returns[k] for p in parts]) for k in TERMS},
        demand_satisfied_pct=cat([p.demand_satisfied_pct for p in parts]),
        collisions=cat([p.collisions for p in parts]),
        min_distance=cat([p.min_distance for p in parts]),
        time_to_cover_s=cat([p.time_to_cover_s for p in parts]),
    )


def write_trace_csv(trace: Trace, scenario: Scenario, path, episode: int = 0) -> None:
    """One row per (step, agent) of the traced episode (`episode`, the first of a rollout: its
    number is the first column): time, position, velocity, supplies, assignment, reward terms."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [res.name for res in scenario.resources]
    header = (["episode", "step", "time_s", "agent", "active", "x", "y", "vx", "vy"]
              + [f"supply_{n}" for n in names] + ["assigned_consumer", "open_demand_total"]
              + [f"reward_{k}" for k in TERMS] + ["reward_total"])
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for k in range(len(trace.pos)):
            open_total = float(trace.demand[k].sum())
            for i in range(trace.pos[k].shape[0]):
                terms = [float(trace.terms[name][k][i]) for name in TERMS]
                out.writerow([episode, k, f"{k * scenario.dt:.2f}", i, int(trace.active[k][i]),
                              *(f"{v:.5f}" for v in trace.pos[k][i]), *(f"{v:.5f}" for v in trace.vel[k][i]),
                              *(f"{v:.5f}" for v in trace.supply[k][i]), int(trace.assign[k][i]),
                              f"{open_total:.5f}", *(f"{v:.6f}" for v in terms), f"{sum(terms):.6f}"])
