"""Batched simulator of the Dec-POMDP: B envs x N single-integrator agents as torch tensors.

`step()` has no Python loop over envs or agents: kinematics, release rules, coverage, reward and
neighbour graphs are tensor ops over [B, N, ...]. The MIQP assignment that guides rw_id is
solved per env only on reset and when an event fires (DESIGN §2), outside the dynamics.

Units: positions in arena units ([-1, 1]^2), velocities in arena units per second, time in s.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from lgtc_ros.scenario import Scenario
from lgtc_ros.world import resources as res
from lgtc_ros.world.observation import Observation, neighbour_mask
from lgtc_ros.world.rewards import TERMS, hybrid_reward

# Jitter of the initial grids as a fraction of a cell: keeps agents >= 0.6 cell apart at reset.
AGENT_JITTER = 0.2
CONSUMER_JITTER = 0.25

Assigner = Callable[["AssignmentProblem"], np.ndarray]  # noqa: F821 - lazy import below


@dataclass(frozen=True)
class StepResult:
    """What `World.step` returns. Rewards are [B,N]; `done` [B] marks the end of an episode.

    `info` holds by-products for metrics and logs: attended [B,M] (a consumer has an agent
    releasing), covering [B,N], released [B,N,r], at [B,N] (consumer each agent is at, M for
    none), pair_dist [B,N,N].
    """

    obs: Observation
    reward: Tensor
    terms: dict[str, Tensor]
    done: Tensor
    info: dict[str, Tensor]


def clip_speed(action: Tensor, v_max: float) -> Tensor:
    """Scale each velocity [.., 2] down to norm <= v_max (direction kept)."""
    norm = action.norm(dim=-1, keepdim=True)
    return action * torch.clamp(v_max / norm.clamp_min(1e-12), max=1.0)


def jittered_grid(gen: torch.Generator, batch: int, count: int, half_width: float, jitter: float,
                  device: torch.device) -> Tensor:
    """`count` points per env in distinct cells of a k x k grid over [-w, w]^2, jittered. [B,count,2]."""
    k = max(1, math.ceil(math.sqrt(1.5 * count)))
    cell = 2 * half_width / k
    pick = torch.rand(batch, k * k, generator=gen, device=device).argsort(-1)[:, :count]
    centre = torch.stack([pick % k, pick // k], -1).to(torch.float32) * cell - half_width + cell / 2
    noise = (torch.rand(batch, count, 2, generator=gen, device=device) * 2 - 1) * jitter * cell
    return centre + noise


def random_quantities(gen: torch.Generator, batch: int, rows: int, r: int, types_per_row: int,
                      low: float, high: float, device: torch.device,
                      allowed: tuple[int, ...] | None = None) -> Tensor:
    """[B,rows,r]: each row gets `types_per_row` distinct types (among `allowed`, default all)
    with a U[low, high] quantity."""
    score = torch.rand(batch, rows, r, generator=gen, device=device)
    if allowed is not None:  # disallowed types sort last, so they are never among the first picks
        mask = torch.zeros(r, dtype=torch.bool, device=device)
        mask[list(allowed)] = True
        score = torch.where(mask, score, score + 2.0)
    chosen = score.argsort(-1)[..., :types_per_row]
    mask = torch.zeros(batch, rows, r, device=device).scatter_(-1, chosen, 1.0)
    qty = low + (high - low) * torch.rand(batch, rows, r, generator=gen, device=device)
    return mask * qty


class World:
    """B independent copies of one scenario. State tensors are [B, ...] attributes.

    Attributes (B envs, N agents, M consumers, r types):
        pos [B,N,2], supply [B,N,r], active [B,N] bool, consumer_pos [B,M,2],
        need [B,M,r] (instantaneous: remaining; persistent: level to cover),
        demand [B,M,r] (open demand, what agents observe), assign [B,N] long (-1: none),
        contributed [B,N,M] bool, t [B] long (steps since reset), supply0/need0 (at reset).
    """

    def __init__(self, scenario: Scenario, n_envs: int = 1, seed: int = 0, device: str = "cpu",
                 assigner: Assigner | None = None, solve_assignment: bool = True):
        self.scenario = s = scenario
        self.n_envs, self.device = n_envs, torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        self.persistent = torch.tensor(s.persistent_mask, dtype=torch.bool, device=self.device)
        self.instantaneous = ~self.persistent
        self.kinds = self.persistent.to(torch.float32)
        self.rates = torch.tensor([x.discharge_rate for x in s.resources], device=self.device)
        self.event_steps = torch.tensor([s.event_step(e) for e in s.events], dtype=torch.long,
                                        device=self.device)
        self.solve_assignment = solve_assignment
        self.assigner = assigner or self._default_assigner
        self.assignment_status: Counter[str] = Counter()
        b, n, m, r = n_envs, s.n_agents, s.n_consumers, s.n_resources
        z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=self.device)  # noqa: E731
        self.pos, self.supply, self.active = z(b, n, 2), z(b, n, r), z(b, n, dtype=torch.bool)
        self.consumer_pos, self.need, self.demand = z(b, m, 2), z(b, m, r), z(b, m, r)
        self.assign = z(b, n, dtype=torch.long) - 1
        self.contributed = z(b, n, m, dtype=torch.bool)
        self.fired = z(b, len(s.events), dtype=torch.bool)
        self.random_discharge_step = z(b, dtype=torch.long) - 1
        self.random_discharge_agent = z(b, dtype=torch.long)
        self.t = z(b, dtype=torch.long)
        self.supply0, self.need0 = z(b, n, r), z(b, m, r)
        self.reset()

    # ------------------------------------------------------------------ reset

    def reset(self, env_mask: Tensor | None = None, seed: int | None = None) -> Observation:
        """Draw fresh episodes for the envs in `env_mask` [B] bool (all when None)."""
        if seed is not None:
            self.gen.manual_seed(seed)
        s, b, dev = self.scenario, self.n_envs, self.device
        mask = torch.ones(b, dtype=torch.bool, device=dev) if env_mask is None else env_mask.to(dev)
        rnd, init = s.random, s.initial
        n, m, r = s.n_agents, s.n_consumers, s.n_resources
        draws = {
            "pos": jittered_grid(self.gen, b, n, rnd.agent_half_width, AGENT_JITTER, dev),
            "consumer_pos": jittered_grid(self.gen, b, m, rnd.consumer_half_width, CONSUMER_JITTER, dev),
            "supply": random_quantities(self.gen, b, n, r, rnd.supply_types_per_agent, *rnd.supply_range, dev,
                                        rnd.supply_types),
            "need": random_quantities(self.gen, b, m, r, rnd.demand_types_per_consumer, *rnd.demand_range, dev,
                                      rnd.demand_types),
        }
        if rnd.cap_supply and init.supply is None:
            total_need = draws["need"].sum((1, 2)) if init.demand is None else \
                torch.tensor(init.demand, device=dev).sum().expand(b)
            scale = (total_need / draws["supply"].sum((1, 2)).clamp_min(1e-9)).clamp(max=1.0)
            draws["supply"] = draws["supply"] * scale[:, None, None]
        # a random discharge per episode (training for missions like Fig. 5): step -1 = none.
        # Drawn only when enabled, so other scenarios keep their seeded episode streams.
        if rnd.discharge_probability > 0:
            hit = torch.rand(b, generator=self.gen, device=dev) < rnd.discharge_probability
            lo, hi = rnd.discharge_window_s
            when = lo + (hi - lo) * torch.rand(b, generator=self.gen, device=dev)
            who = torch.randint(0, n, (b,), generator=self.gen, device=dev)
            self.random_discharge_step[mask] = torch.where(hit, (when / s.dt).round().long(), -1)[mask]
            self.random_discharge_agent[mask] = who[mask]
        fixed = {"pos": init.agent_pos, "consumer_pos": init.consumer_pos, "supply": init.supply,
                 "need": init.demand}
        for name, value in draws.items():
            if fixed[name] is not None:
                value = torch.tensor(fixed[name], dtype=torch.float32, device=dev).expand_as(value)
            getattr(self, name)[mask] = value[mask]
        self.active[mask] = True
        self.contributed[mask] = False
        self.fired[mask] = False
        self.t[mask] = 0
        self.supply0[mask] = self.supply[mask]
        self.need0[mask] = self.need[mask]
        self.demand = self._open_demand()
        self._refresh_assignment(mask)
        return self.observe()

    # ------------------------------------------------------------------ step

    def step(self, action: Tensor) -> StepResult:
        """Advance every env by dt. action [B,N,2]: velocity commands, arena units/s (clipped to v_max)."""
        s = self.scenario
        self._apply_events()
        vel = clip_speed(action.to(self.pos.dtype), s.v_max) * self.active[..., None]
        pos_prev = self.pos
        self.pos = (self.pos + vel * s.dt).clamp(-1.0, 1.0)

        radii = res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, self.demand)
        at = res.membership(self.pos, self.consumer_pos, radii, self.active)
        released, delivered = res.release_instantaneous(self.supply, self.need, at, self.instantaneous)
        inst_open_before = (self.need * self.instantaneous).sum(-1) > 0
        self.need = (self.need - delivered).clamp_min(0.0)
        self.supply = (self.supply - released).clamp_min(0.0)
        releasing = released.sum(-1) > 0
        self.contributed |= res.one_hot(at, s.n_consumers) & releasing[..., None]
        completed = inst_open_before & ((self.need * self.instantaneous).sum(-1) <= 1e-6)
        covered, covering = res.persistent_coverage(self.supply, self.need, at, self.persistent)
        attended = res.attended(self.supply, self.need, at)
        self.supply = res.discharge(self.supply, self.rates, self.active, s.dt)
        demand_prev = self.demand
        self.demand = res.remaining_demand(self.need, covered, self.persistent)

        target, inside_target = self._assigned_targets(at)
        pair_dist = torch.cdist(self.pos, self.pos, compute_mode="donot_use_mm_for_euclid_dist")
        neighbours = neighbour_mask(self.pos, self.active, s.comm_radius, pair_dist)
        terms = hybrid_reward(
            s.rewards, pos_prev=pos_prev, pos=self.pos, target=target, inside_target=inside_target,
            released=released, covering=covering, completed=completed, contributed=self.contributed,
            neighbours=neighbours, pair_dist=pair_dist, attended=attended, has_need=self.need.sum(-1) > 0,
            active=self.active, demand_prev=demand_prev, demand=self.demand,
        )
        self.t += 1
        reward = torch.stack([terms[k] for k in TERMS]).sum(0)
        obs = Observation(self.pos, self.supply, self.consumer_pos, self.demand, self.kinds, neighbours,
                          self.active)
        info = {"attended": attended, "covering": covering, "released": released, "at": at,
                "pair_dist": pair_dist}
        return StepResult(obs, reward, terms, self.t >= s.episode_steps, info)

    def observe(self) -> Observation:
        """Current observations of every agent in every env."""
        neighbours = neighbour_mask(self.pos, self.active, self.scenario.comm_radius)
        return Observation(self.pos, self.supply, self.consumer_pos, self.demand, self.kinds, neighbours,
                           self.active)

    # ------------------------------------------------------------------ helpers

    def _open_demand(self) -> Tensor:
        s = self.scenario
        radii = res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, self.need)
        at = res.membership(self.pos, self.consumer_pos, radii, self.active)
        covered, _ = res.persistent_coverage(self.supply, self.need, at, self.persistent)
        return res.remaining_demand(self.need, covered, self.persistent)

    def _assigned_targets(self, at: Tensor) -> tuple[Tensor, Tensor]:
        """Assigned consumer position [B,N,2] (own position if unassigned) and inside-R flag [B,N]."""
        has = self.assign >= 0
        target = torch.gather(self.consumer_pos, 1, self.assign.clamp_min(0)[..., None].expand(-1, -1, 2))
        target = torch.where(has[..., None], target, self.pos)
        return target, (at == self.assign) & has

    def _apply_events(self) -> None:
        """Fire the scheduled events due at this step (a loop over events, vectorized over envs)."""
        self._apply_random_discharge()
        if not self.scenario.events:
            return
        due = (self.t[:, None] == self.event_steps[None, :]) & ~self.fired
        if not due.any():
            return
        for k, event in enumerate(self.scenario.events):
            fire = due[:, k]
            if not fire.any():
                continue
            types = slice(None) if event.resource is None else event.resource
            if event.kind in ("discharge", "dropout"):
                agent = self._lone_agents() if event.select == "lone" else torch.full_like(self.t, event.agent)
                envs = torch.nonzero(fire & (agent >= 0)).flatten()
                who = agent[envs]
                if event.kind == "discharge":
                    self.supply[envs, who, types] = event.value
                if event.kind == "dropout" or event.land:
                    self.active[envs, who] = False
            elif event.kind == "demand_change":
                self.need[fire, event.consumer, types] = event.value
            elif event.kind == "consumer_move":
                self.consumer_pos[fire, event.consumer] = torch.tensor(event.position, device=self.device)
        self.fired |= due
        self._refresh_assignment(due.any(-1))

    def _lone_agents(self) -> Tensor:
        """[B] the lowest-index flying agent alone inside a consumer's radius, -1 if none."""
        s = self.scenario
        radii = res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, self.demand)
        m = s.n_consumers
        at = res.membership(self.pos, self.consumer_pos, radii, self.active)      # [B,N], M = none
        count = res.one_hot(at, m).sum(1)                                          # [B,M]
        alone = (at < m) & (torch.gather(count, 1, at.clamp_max(m - 1)) == 1)
        return torch.where(alone.any(1), alone.to(torch.uint8).argmax(1), torch.full_like(self.t, -1))

    def _apply_random_discharge(self) -> None:
        fire = self.t == self.random_discharge_step
        if not fire.any():
            return
        envs = torch.nonzero(fire).flatten()
        agents = self.random_discharge_agent[envs]
        self.supply[envs, agents] = 0.0
        self.active[envs, agents] = False
        self._refresh_assignment(fire)

    def _refresh_assignment(self, env_mask: Tensor) -> None:
        """Re-solve eq. (3) for the envs in `env_mask`: once per reset or event, never per step."""
        if not self.solve_assignment:
            return
        for env in torch.nonzero(env_mask).flatten().tolist():
            self.assign[env] = torch.as_tensor(self.assignment_for(env), device=self.device)

    def assignment_for(self, env: int) -> np.ndarray:
        """Consumer index per agent [N] (-1 for inactive agents) for env `env`, from eq. (3)."""
        from lgtc_ros.assignment import AssignmentProblem

        a = self.scenario.assignment
        active = self.active[env].cpu().numpy()
        out = np.full(self.scenario.n_agents, -1, dtype=np.int64)
        agents = np.flatnonzero(active)
        if agents.size == 0:
            return out
        need = self.need[env].cpu().numpy().astype(np.float64)
        # eq. (3) needs every consumer covered: with fewer agents left than consumers, serve the
        # consumers with the largest need.
        consumers = np.argsort(-need.sum(1), kind="stable")[: agents.size]
        consumers.sort()
        problem = AssignmentProblem(
            agent_pos=self.pos[env, agents].cpu().numpy().astype(np.float64),
            supply=self.supply[env, agents].cpu().numpy().astype(np.float64),
            consumer_pos=self.consumer_pos[env, consumers].cpu().numpy().astype(np.float64),
            demand=need[consumers],
            w_mismatch=a.w_mismatch, w_proximity=a.w_proximity, demand_floor=a.demand_floor,
        )
        out[agents] = consumers[self.assigner(problem)]
        return out

    def _default_assigner(self, problem) -> np.ndarray:
        from lgtc_ros.assignment import solve

        a = self.scenario.assignment
        result = solve(problem, time_limit=a.time_limit_s, gap_limit=a.gap_limit)
        self.assignment_status[result.status] += 1
        return result.assign
