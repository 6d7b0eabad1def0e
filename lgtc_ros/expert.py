"""The centralized expert of paper §IV: MIQP assignment (eq. 3) + P-control + centralized avoidance.

It sees the whole state of every env (perfect information), which is what makes it an upper
reference for the decentralized policies. Velocities in arena units per second.

- Assignment: eq. (3) over the agents that still carry something and the consumers that still
  need something; re-planned whenever that picture changes (an instantaneous release empties an
  agent or satisfies a consumer, an event fires), otherwise cached.
- Control: each agent heads for a slot on a small ring around its consumer (agents sharing a
  consumer spread out instead of piling onto its centre); spent agents hold position.
- Avoidance: a centralized repulsion between every pair closer than `avoid_distance`.
- Safety (`safety=`, off by default): the commands then pass, env by env, through the project's CBF
  safety filter (`lgtc_ros.safety.swarm.SwarmFilter`, "decentralized" = the per-drone form the
  drones fly, or "centralized"), the same filter the runtime and the ROS cbf node apply. The
  repulsion is a soft heuristic that lets crowded teams collide (N = 100: ~700 contacts an
  episode); the CBF keeps every pair D apart, which makes the expert a reference at any N.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lgtc_ros.safety.batched import SAFETY, EnvFilters
from lgtc_ros.world.env import World, clip_speed


@dataclass(frozen=True)
class ExpertGains:
    """Controller gains. Units: 1/s for `kp`, arena units for distances."""

    kp: float = 4.0
    """P gain toward the slot, 1/s."""
    avoid_gain: float = 1.5
    """Repulsion speed at contact, as a fraction of v_max."""
    avoid_margin: float = 1.6
    """Repulsion starts at avoid_margin * safety_radius."""
    ring_fraction: float = 0.6
    """Slots lie at most this fraction of R_m from the consumer."""


EXPERT_NAMES = {"expert": None, "expert-cbf": "decentralized", "expert-cbf-centralized": "centralized"}
"""Policy names (`lgtc eval/sweep --policy`) -> the expert's `safety` form: the paper's expert, and
the same through the drones' decentralized CBF or a centralized one."""


class CentralizedExpert:
    """Callable policy `(world) -> action [B,N,2]` for a batched `World`.

    `safety`: None (the paper's expert: its repulsion only) or a `SwarmFilter` form
    ("decentralized", "centralized"): every env's commands then go through a filter of its own
    (kept across calls and episodes: warm starts). `repulsion`: whether the repulsion stays on.

    Under the CBF the repulsion stays on by default, measured on paper_10x4 variants, M = 4,
    8 episodes (seed 3000), decentralized CBF, repulsion on vs off: N = 50 return 7.95 vs 5.81
    (demand satisfied 78 % vs 55 %), N = 100 4.84 vs 4.13 (40 % vs 26 %), both ~0 collisions. The
    CBF alone only stops an agent at the barrier, so agents bound for one consumer jam there; the
    repulsion spreads them out (makes room) before they reach it, and the CBF then only has to
    catch what the repulsion lets through."""

    def __init__(self, gains: ExpertGains | None = None,
                 safety: Literal["decentralized", "centralized"] | None = None, repulsion: bool = True):
        if safety is not None and safety not in SAFETY:
            raise ValueError(f"safety = {safety!r}: must be None, decentralized or centralized")
        self.gains = gains or ExpertGains()
        self.safety = safety
        self.repulsion = bool(repulsion)
        self._signature: Tensor | None = None
        self._plan: Tensor | None = None  # [B,N] consumer per agent, -1 = hold
        self._cbf = None if safety is None else EnvFilters(safety)
        self.replans = 0

    @classmethod
    def named(cls, name: str) -> "CentralizedExpert":
        """The expert a policy name stands for: `expert` (the paper's), `expert-cbf` (through the
        decentralized CBF, the form the drones fly), `expert-cbf-centralized`."""
        if name not in EXPERT_NAMES:
            raise ValueError(f"unknown expert {name!r}: one of {', '.join(EXPERT_NAMES)}")
        return cls(safety=EXPERT_NAMES[name])

    def reset(self) -> None:
        self._signature = None
        self._plan = None

    def __call__(self, world: World) -> Tensor:
        self._update_plan(world)
        target = self._slots(world)
        s, g = world.scenario, self.gains
        v = g.kp * (target - world.pos)
        hold = self._plan < 0
        v = torch.where(hold[..., None], torch.zeros_like(v), v)
        v = clip_speed(v, s.v_max)
        if self.repulsion:
            v = v + self._repulsion(world)
        v = clip_speed(v, s.v_max) * world.active[..., None]
        return v if self._cbf is None else self._cbf(world, v)

    @property
    def cbf_stats(self) -> dict[str, int]:
        """The CBF counters summed over the envs (empty with safety off)."""
        return {} if self._cbf is None else self._cbf.stats

    # ------------------------------------------------------------------ planning

    def _state_signature(self, world: World) -> Tensor:
        """What triggers a re-plan: who carries something, which consumer needs what, who flies."""
        return torch.cat([(world.supply > 1e-6).flatten(1), (world.need > 1e-6).flatten(1),
                          world.active, world.t[:, None] == 0], 1)

    def _update_plan(self, world: World) -> None:
        sig = self._state_signature(world)
        if self._plan is None or self._plan.shape[0] != world.n_envs:
            self._plan = torch.full(world.active.shape, -1, dtype=torch.long)
            changed = torch.ones(world.n_envs, dtype=torch.bool)
        else:
            changed = (sig != self._signature).any(1)
        for env in torch.nonzero(changed).flatten().tolist():
            self._plan[env] = torch.as_tensor(self.plan_env(world, env))
            self.replans += 1
        self._signature = sig

    def plan_env(self, world: World, env: int) -> np.ndarray:
        """Consumer per agent [N] for env `env`; -1 for agents with nothing left to deliver."""
        from lgtc_ros.assignment import AssignmentProblem, solve

        a = world.scenario.assignment
        supply = world.supply[env].double().numpy()
        need = world.need[env].double().numpy()
        plan = np.full(world.scenario.n_agents, -1, dtype=np.int64)
        agents = np.flatnonzero(world.active[env].numpy() & (supply.sum(1) > 1e-6))
        consumers = np.flatnonzero(need.sum(1) > 1e-6)
        if agents.size == 0 or consumers.size == 0:
            return plan
        if agents.size < consumers.size:  # eq. (3) covers every consumer: keep the neediest ones
            consumers = np.sort(consumers[np.argsort(-need[consumers].sum(1), kind="stable")[: agents.size]])
        problem = AssignmentProblem(
            agent_pos=world.pos[env, agents].double().numpy(), supply=supply[agents],
            consumer_pos=world.consumer_pos[env, consumers].double().numpy(), demand=need[consumers],
            w_mismatch=a.w_mismatch, w_proximity=a.w_proximity, demand_floor=a.demand_floor,
        )
        plan[agents] = consumers[solve(problem, time_limit=a.time_limit_s, gap_limit=a.gap_limit).assign]
        return plan

    # ------------------------------------------------------------------ control

    def _slots(self, world: World) -> Tensor:
        """Target [B,N,2]: agents sharing consumer m sit evenly on a ring around it."""
        s, plan = world.scenario, self._plan
        m = s.n_consumers
        onehot = torch.nn.functional.one_hot(plan.clamp_min(0), m) * (plan >= 0)[..., None]
        rank = (onehot.cumsum(1) * onehot).sum(-1) - 1          # index among agents sharing m
        count = torch.gather(onehot.sum(1), 1, plan.clamp_min(0))  # [B,N] agents sharing m
        spacing = 1.3 * s.safety_radius
        ring = spacing / (2 * torch.sin(math.pi / count.clamp_min(2).float()))
        ring = torch.where(count > 1, ring.clamp(max=self.gains.ring_fraction * s.consumer_radius),
                           torch.zeros_like(ring))
        angle = 2 * math.pi * rank.float() / count.clamp_min(1).float()
        centre = torch.gather(world.consumer_pos, 1, plan.clamp_min(0)[..., None].expand(-1, -1, 2))
        slot = centre + ring[..., None] * torch.stack([angle.cos(), angle.sin()], -1)
        return torch.where((plan >= 0)[..., None], slot, world.pos)

    def _repulsion(self, world: World) -> Tensor:
        s, g = world.scenario, self.gains
        diff = world.pos[:, :, None, :] - world.pos[:, None, :, :]
        dist = diff.norm(dim=-1)
        reach = g.avoid_margin * s.safety_radius
        both = world.active[:, :, None] & world.active[:, None, :]
        eye = torch.eye(s.n_agents, dtype=torch.bool)
        weight = ((reach - dist) / reach).clamp_min(0.0) * (both & ~eye)
        push = (diff / dist.clamp_min(1e-6)[..., None] * weight[..., None]).sum(2)
        return g.avoid_gain * s.v_max * push
