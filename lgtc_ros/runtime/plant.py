"""The mission world a ROS graph talks to (`world_node`), without ROS.

One env of the batched simulator, stepped at the mission rate, in one of two modes:

- "sim": the drones are simulated too: each tick integrates the safe velocity commands
  (`/{name}/cmd_vel_safe`, m/s) and reports the poses;
- "hardware": the drones are real (Crazyswarm2 publishes their poses); only the resources are
  virtual, as in the paper's lab runs: each tick places the agents at their measured positions and
  runs the release / coverage / discharge bookkeeping without moving them. A drone measured on
  the ground (below half the flight height) is out of the mission from then on, as is one that
  never reported a pose before the start (`ground`): a drone whose takeoff failed, or that the
  bridge landed, must not deliver virtual resources from the floor.

Either way the outputs are what the drones need: the demand broadcast, each drone's supply status
(supplies and whether it still flies) and, for the record, poses and reward terms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.world import TERMS, World


def demand_broadcast(world: World, now: float, env: int = 0) -> comm.DemandBroadcast:
    """Env `env`'s consumers as the demand broadcast drones receive (positions, open demand, kinds)."""
    return comm.DemandBroadcast(now, world.consumer_pos[env].numpy().astype(np.float64),
                                world.demand[env].numpy().astype(np.float64), world.kinds.numpy().astype(np.int64))


@dataclass(frozen=True)
class PlantOutput:
    stamp: float
    poses_m: np.ndarray
    """[N,3] metres, world frame; z = flight height, 0 once landed."""
    active: np.ndarray
    """[N] bool: still flying."""
    demands: comm.FloatArray
    """``lgtc_demands/v1`` for /lgtc/demands."""
    supplies: list[comm.FloatArray]
    """``lgtc_supply/v1`` per drone for /{name}/lgtc/supply."""
    reward_terms: comm.FloatArray | None
    """``lgtc_reward_terms/v1`` of the last step (None before the first)."""
    done: bool
    """The mission's episode length is reached."""


class MissionPlant:
    def __init__(self, scenario, seed: int = 0, mode: Literal["sim", "hardware"] = "sim",
                 frame: ArenaFrame | None = None):
        if mode not in ("sim", "hardware"):
            raise ValueError(f"mode = {mode!r}: must be sim or hardware")
        self.scenario, self.mode = scenario, mode
        self.frame = ArenaFrame.from_scenario(scenario) if frame is None else frame
        self.world = World(scenario, n_envs=1, seed=seed)
        self._terms: np.ndarray | None = None

    def ground(self, agents) -> None:
        """These drones are out of the mission (they land or stay down); see the module docstring."""
        self.world.ground(0, agents)

    def observe(self, now: float) -> PlantOutput:
        """The current state as messages (what is published before the first step)."""
        w, s = self.world, self.scenario
        active = w.active[0].numpy().copy()
        pos = self.frame.to_metres(w.pos[0].numpy().astype(np.float64))
        z = np.where(active, self.frame.flight_height_m, 0.0)
        demands = comm.encode_demands(demand_broadcast(w, now))
        supply = w.supply[0].numpy().astype(np.float64)
        supplies = [comm.encode_supply(comm.SupplyStatus(i, now, supply[i], bool(active[i])))
                    for i in range(s.n_agents)]
        terms = None if self._terms is None else comm.encode_reward_terms(now, list(TERMS), self._terms)
        return PlantOutput(now, np.column_stack([pos, z]), active, demands, supplies, terms,
                           bool(w.t[0] >= s.episode_steps))

    def step(self, now: float, v_safe_m_s: np.ndarray | None = None,
             measured_pos_m: np.ndarray | None = None) -> PlantOutput:
        """Advance one tick. sim: `v_safe_m_s` [N,2] (NaN rows: no fresh command -> hold still).
        hardware: `measured_pos_m` [N,2 or 3] (NaN rows: no fresh pose -> keep the last one)."""
        s, w = self.scenario, self.world
        n = s.n_agents
        action = torch.zeros(1, n, 2)
        if self.mode == "sim":
            v = np.zeros((n, 2)) if v_safe_m_s is None else np.asarray(v_safe_m_s, dtype=np.float64).reshape(n, 2)
            v = np.where(np.isfinite(v), v, 0.0)
            action[0] = torch.as_tensor(self.frame.velocity_to_arena(v), dtype=torch.float32)
        else:
            if measured_pos_m is None:
                raise ValueError("hardware mode needs the measured positions")
            p = np.asarray(measured_pos_m, dtype=np.float64).reshape(n, -1)
            fresh = np.isfinite(p[:, :2]).all(1)
            arena = self.frame.to_arena(np.where(fresh[:, None], p[:, :2], 0.0))
            w.pos[0, torch.from_numpy(fresh)] = torch.as_tensor(arena[fresh], dtype=w.pos.dtype)
            if p.shape[1] >= 3:
                with np.errstate(invalid="ignore"):
                    down = fresh & (p[:, 2] < self.frame.flight_height_m / 2) & w.active[0].numpy()
                self.ground(np.flatnonzero(down))
        out = w.step(action)
        self._terms = np.stack([out.terms[k][0].numpy() for k in TERMS], 1).astype(np.float64)
        return self.observe(now)
