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
from lgtc_ros.world import kernels
from lgtc_ros.world import resources as res
from lgtc_ros.world.observation import Observation
from lgtc_ros.world.rewards import TERMS

SPARSE_BELOW = 0.35
"""`World.step` computes release and coverage on the rows of the agents inside a consumer only
when they are fewer than this share of all agents (else on all rows: index ops on most rows cost
more than plain ops on all). Same results either way."""

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

    STATE = ("pos", "supply", "active", "consumer_pos", "need", "demand", "assign", "contributed", "fired", "t",
             "supply0", "need0", "random_discharge_step", "random_discharge_agent")
    """The tensors that make up the envs' state: a checkpoint of them (and of `gen`) continues them exactly."""

    def state_dict(self, clone: bool = True) -> dict[str, Tensor]:
        """The `STATE` tensors: copies, or with `clone=False` the tensors themselves (for a caller
        that writes them out before the next step changes them)."""
        return {k: getattr(self, k).clone() if clone else getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Take the envs' state from `state_dict()`'s tensors (copied). Fields a checkpoint from
        before them lacks keep their values."""
        for k, v in state.items():
            setattr(self, k, v.clone())

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
        """Advance every env by dt. action [B,N,2]: velocity commands, arena units/s (clipped to v_max).

        The rules are those of `resources.py` and `rewards.py`; the state, distances and graphs come out bit
        for bit as theirs, the rewards to float rounding (test/test_world_regression.py). The
        ops are chosen for speed on the CPU, where torch is slow on broadcasts, reductions and
        gathers over tiny trailing dims (r types, M consumers, x/y): per-type masks are
        precomputed at full size (`_Masks`), sums over types are matrix-vector products, sums
        compared with 0 are tests of "any" (supplies and needs are >= 0), one index_add per step
        sums the supplies at every consumer for release and coverage alike (on the rows of the
        agents inside a consumer when they are few), the release arithmetic is skipped on steps
        that deliver nothing, the assigned targets are cached until the assignment changes, and
        the `active` masks are skipped while every agent flies (x * 1.0 == x)."""
        s, k = self.scenario, self._masks()
        self._apply_events()
        active = self.active
        all_active = bool(active.all())
        vel = clip_speed(action.to(self.pos.dtype), s.v_max)
        if not all_active:
            vel = vel * active[..., None]
        pos_prev = self.pos
        self.pos = (self.pos + vel * s.dt).clamp(-1.0, 1.0)
        b, m = self.n_envs, s.n_consumers

        # who is at which consumer (res.membership, fused)
        radii = k.radii if s.consumer_radius_demand_scale == 0.0 else \
            res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, self.demand)
        at = kernels.membership(self.pos, self.consumer_pos, radii, active)
        inside = at < m
        # each agent's consumer as a row of the [B*(M+1), ...] views below (row M of an env: none)
        slot = (at + k.env_base).view(-1)
        r = k.r

        # instantaneous release (res.release_instantaneous) and coverage. One sum of the supplies per
        # consumer serves both kinds: its instantaneous columns are the incoming supply, its
        # persistent columns the supply present for coverage (release leaves those columns alone).
        # Only agents inside a consumer release or cover: when they are few (agents on their way),
        # only their rows are computed (`SPARSE_BELOW`); the sums see the same agents in the same
        # order either way, so both give the same bits.
        n_rows = b * s.n_agents
        rows = None
        if n_rows and float(inside.sum()) < SPARSE_BELOW * n_rows:
            rows = torch.nonzero(inside.view(-1)).squeeze(1)              # ascending
            slot = slot.index_select(0, rows)
        pick = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))  # noqa: E731
        spread = (lambda t, like: t) if rows is None else (lambda t, like: like.index_copy_(0, rows, t))  # noqa: E731
        supply = self.supply
        supply_in = pick(supply.reshape(-1, r))
        present = k.sums_r.zero_().index_add_(0, slot, supply_in).view(b, m + 1, r)
        need_pad = k.need_pad
        torch.mul(self.need, k.inst_mr, out=need_pad[:, :m])              # row M and persistent columns: 0
        delivered = torch.minimum(present, need_pad)
        inst_need = torch.mv(self.need.reshape(-1, r), k.inst_f)          # supplies, needs >= 0
        if bool(delivered.any()):
            frac = delivered / present.clamp_min(1e-12)                   # 0 where nothing came in
            released_in = supply_in * frac.view(-1, r).index_select(0, slot)
            released = spread(released_in, supply.new_zeros(n_rows, r)).view(supply.shape)
            released_sum = spread(torch.mv(released_in, k.ones_r), supply.new_zeros(n_rows)).view(at.shape)
            self.need = (self.need - delivered[:, :m]).clamp_min(0.0)
            self.supply = (supply - released).clamp_min(0.0)
            releasing = released_sum > 0
            if bool(releasing.any()):
                self.contributed |= k.onehot.index_select(0, torch.where(releasing, at, m).view(-1)).view(
                    self.contributed.shape)
            inst_left = torch.mv(self.need.reshape(-1, r), k.inst_f)
        else:  # nothing delivered (most steps): need and supply stay (>= 0, so clamping keeps them too)
            released, released_sum = supply.new_zeros(supply.shape), supply.new_zeros(at.shape)
            self.need, self.supply, inst_left = self.need.clone(), supply.clone(), inst_need
        completed = ((inst_need > 0) & (inst_left <= 1e-6)).view(b, m)

        # persistent coverage and attendance (res.persistent_coverage, res.attended):
        # useful[i, l] = 1 when agent i carries type l and its consumer still needs l
        wanted = k.wanted_pad
        torch.sign(self.need, out=wanted[:, :m])                           # row M stays 0
        useful = torch.sign(pick(self.supply.reshape(-1, r))) * wanted.view(-1, r).index_select(0, slot)
        covering = spread(torch.mv(useful, k.pers_f) > 0, at.new_zeros(n_rows, dtype=torch.bool)).view(at.shape)
        helpers = k.sums_1.zero_().index_add_(0, slot, torch.mv(useful, k.ones_r)).view(b, m + 1)
        attended = helpers[:, :m] > 0
        covered = torch.minimum(present[:, :m], self.need) * k.pers_mr
        if k.drain is not None:  # res.discharge
            drain = k.drain if all_active else k.drain * active[..., None]
            self.supply = (self.supply - drain).clamp_min(0.0)
        demand_prev = self.demand
        self.demand = torch.where(k.pers_mr_bool, self.need - covered, self.need).clamp_min(0.0)

        target, inside_target = self._assigned_targets(at)
        pair_dist, neighbours, close = kernels.pairwise(self.pos, active, s.comm_radius, s.rewards.collision_distance)
        self._graph_cache = ((self.pos, self.pos._version, self.active, self.active._version), neighbours)
        terms = self._reward_terms(pos_prev, target, inside_target, released_sum, covering, completed, close,
                                   attended, demand_prev, active, all_active)
        self.t += 1
        reward = terms[TERMS[0]]
        for name in TERMS[1:]:
            reward = reward + terms[name]
        obs = Observation(self.pos, self.supply, self.consumer_pos, self.demand, self.kinds, neighbours,
                          self.active)
        info = {"attended": attended, "covering": covering, "released": released, "at": at,
                "pair_dist": pair_dist}
        return StepResult(obs, reward, terms, self.t >= s.episode_steps, info)

    def observe(self) -> Observation:
        """Current observations of every agent in every env. The neighbour graph of the last step is
        reused while positions and `active` are those it was computed from (same tensors, no
        in-place write since): a rollout's observe() after step() costs no second graph."""
        key = (self.pos, self.pos._version, self.active, self.active._version)
        cached = getattr(self, "_graph_cache", None)
        if cached is not None and all(a is b if isinstance(a, Tensor) else a == b for a, b in zip(cached[0], key)):
            neighbours = cached[1]
        else:
            _, neighbours, _ = kernels.pairwise(self.pos, self.active, self.scenario.comm_radius,
                                                self.scenario.rewards.collision_distance)
        return Observation(self.pos, self.supply, self.consumer_pos, self.demand, self.kinds, neighbours,
                           self.active)

    def _reward_terms(self, pos_prev, target, inside_target, released_sum, covering, completed, close, attended,
                      demand_prev, active, all_active) -> dict[str, Tensor]:
        """`rewards.hybrid_reward` on this step's by-products (same terms, to float rounding)."""
        g, k = self.scenario.rewards, self._masks()
        ftype = self.pos.dtype
        # rw_id: |p' - t|^2 - |p - t|^2 = (p' - p) . (p' + p - 2 t), times the gain (in the mv)
        step = (pos_prev - self.pos) * (pos_prev + self.pos).sub_(target, alpha=2.0)
        assign = torch.mv(step.view(-1, 2), k.progress_2).view(inside_target.shape).masked_fill_(
            inside_target, g.assignment_inside)
        if bool(completed.any()):
            earned = (self.contributed & completed[:, None, :]).any(-1) * g.subteam_completion
        else:
            earned = completed.new_zeros(covering.shape, dtype=ftype)
        no_need = (torch.mv(self.need.reshape(-1, k.r), k.ones_r) <= 0).view(attended.shape)
        everyone = (attended | no_need).all(-1)
        reduced = torch.mv((demand_prev - self.demand).view(attended.shape[0], -1), k.ones_mr)
        terms = {
            "assignment": assign,
            "instantaneous_release": g.instantaneous_release * released_sum,
            "persistent_cover": covering * g.persistent_cover,
            "subteam_completion": earned,
            "collision": close * -g.collision,
            "all_covered": (everyone * g.all_covered)[:, None].expand_as(assign).contiguous(),
            "demand_reduction": (g.demand_reduction * reduced)[:, None].expand_as(assign).contiguous(),
        }
        if not all_active:
            on = active.to(ftype)
            terms = {name: value * on for name, value in terms.items()}
        return terms

    def _masks(self) -> "_Masks":
        if getattr(self, "_mask_cache", None) is None or self._mask_cache.key != (self.n_envs, self.device):
            self._mask_cache = _Masks.build(self)
        return self._mask_cache

    # ------------------------------------------------------------------ helpers

    def _open_demand(self) -> Tensor:
        s = self.scenario
        radii = res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, self.need)
        at = res.membership(self.pos, self.consumer_pos, radii, self.active)
        covered, _ = res.persistent_coverage(self.supply, self.need, at, self.persistent)
        return res.remaining_demand(self.need, covered, self.persistent)

    def _assigned_targets(self, at: Tensor) -> tuple[Tensor, Tensor]:
        """Assigned consumer position [B,N,2] (own position if unassigned) and inside-R flag [B,N]."""
        # cached until the assignment or a consumer position changes (re-plan, reset, event, or
        # a caller writing them: in-place writes bump a tensor's _version)
        key = (self.assign, self.assign._version, self.consumer_pos, self.consumer_pos._version)
        cached = getattr(self, "_target_cache", None)
        if cached is None or any(a is not b if isinstance(a, Tensor) else a != b for a, b in zip(cached[0], key)):
            has = self.assign >= 0
            rows = (self.assign.clamp_min(0) + self._masks().consumer_base).view(-1)
            target = self.consumer_pos.reshape(-1, 2).index_select(0, rows).view(self.pos.shape)
            state = "all" if bool(has.all()) else "none" if not bool(has.any()) else "some"
            cached = self._target_cache = (key, has, target, has[..., None].expand_as(target).contiguous(), state)
        _, has, target, has_xy, state = cached
        if state == "all":
            return target, at == self.assign
        if state == "none":
            return self.pos, torch.zeros_like(has)
        return torch.where(has_xy, target, self.pos), (at == self.assign) & has

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

    def ground(self, env: int, agents) -> None:
        """Take `agents` of env `env` out of the mission outside its own events (a real drone that
        could not take off, or landed): inactive from now on, eq. (3) re-solved without them."""
        idx = torch.as_tensor(np.asarray(agents, dtype=np.int64).reshape(-1), device=self.device)
        if idx.numel() == 0:
            return
        self.active[env, idx] = False
        mask = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)
        mask[env] = True
        self._refresh_assignment(mask)

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


@dataclass(frozen=True)
class _Masks:
    """Constants and scratch buffers of `World.step` for one World (B envs): per-type masks at full
    size, row offsets into the flattened [B*(M+1), ...] per-consumer views."""

    key: tuple
    r: int
    inst_f: Tensor          # [r] 1.0 for instantaneous types
    pers_f: Tensor          # [r] 1.0 for persistent types
    inst_mr: Tensor         # [B,M,r] inst_f at full size
    pers_mr: Tensor         # [B,M,r] pers_f at full size
    pers_mr_bool: Tensor    # [B,M,r]
    drain: Tensor | None    # [B,N,r] discharge per step (None: no type discharges)
    env_base: Tensor        # [B,N] b * (M+1): env b's first row in [B*(M+1), ...]
    consumer_base: Tensor   # [B,1] b * M
    onehot: Tensor          # [M+1,M] bool, row M all False
    ones_r: Tensor
    ones_mr: Tensor
    progress_2: Tensor      # [2] the gain of rw_id's progress
    radii: Tensor           # [B,M] R_m, when it does not grow with demand
    # scratch, overwritten every step (nothing `step` returns aliases them)
    sums_r: Tensor          # [B*(M+1), r]
    sums_1: Tensor          # [B*(M+1)]
    need_pad: Tensor        # [B,M+1,r], row M stays 0
    wanted_pad: Tensor      # [B,M+1,r], row M stays 0

    @staticmethod
    def build(w: "World") -> "_Masks":
        s, b, dev = w.scenario, w.n_envs, w.device
        n, m, r = s.n_agents, s.n_consumers, s.n_resources
        full = lambda mask, rows: mask.expand(b, rows, r).contiguous()  # noqa: E731
        inst, pers = w.instantaneous.to(torch.float32), w.persistent.to(torch.float32)
        return _Masks(
            key=(b, dev), r=r, inst_f=inst, pers_f=pers,
            inst_mr=full(inst, m), pers_mr=full(pers, m), pers_mr_bool=full(w.persistent, m),
            drain=full(w.rates * s.dt, n) if bool((w.rates > 0).any()) else None,
            env_base=(torch.arange(b, device=dev) * (m + 1))[:, None].expand(b, n).contiguous(),
            consumer_base=(torch.arange(b, device=dev) * m)[:, None],
            onehot=torch.eye(m + 1, dtype=torch.bool, device=dev)[:, :m].contiguous(),
            ones_r=torch.ones(r, device=dev), ones_mr=torch.ones(m * r, device=dev),
            progress_2=torch.full((2,), s.rewards.assignment_progress, device=dev),
            radii=torch.full((b, m), s.consumer_radius, device=dev),
            sums_r=torch.zeros(b * (m + 1), r, device=dev), sums_1=torch.zeros(b * (m + 1), device=dev),
            need_pad=torch.zeros(b, m + 1, r, device=dev), wanted_pad=torch.zeros(b, m + 1, r, device=dev),
        )
