"""One drone's decision loop: its own policy module and recurrent state, local data only.

Each tick the drone takes its own pose and supplies, the consumer broadcast and the neighbour
messages its radio delivered (sent last tick), runs the exported LGTC step, and returns the
nominal velocity plus the message it broadcasts. The ROS `agent_node` wraps exactly this class.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lgtc_ros.comm import DemandBroadcast, NeighbourMessage


@dataclass(frozen=True)
class DroneDecision:
    """v_nominal [2] arena units/s; message to broadcast; x [F]; attention [M]; choice (consumer)."""

    v_nominal: np.ndarray
    message: NeighbourMessage
    x: np.ndarray
    attention: np.ndarray
    choice: int
    policy_s: float
    """Wall time of the policy call, s."""


class DroneAgent:
    def __init__(self, agent_id: int, module, state_dim: int, feature_dim: int):
        self.agent_id = agent_id
        self.module = module
        self.state_dim, self.feature_dim = state_dim, feature_dim
        self.x = torch.zeros(state_dim)

    def reset(self) -> None:
        self.x = torch.zeros(self.state_dim)

    def decide(self, now: float, pos: np.ndarray, supply: np.ndarray, demands: DemandBroadcast,
               inbox: list[NeighbourMessage]) -> DroneDecision:
        """pos [2] arena units, supply [r]; inbox: decoded messages of neighbours (any count)."""
        nb_pos, nb_psi, nb_x = stack_messages(inbox, self.feature_dim, self.state_dim)
        return self.step(now, pos, supply, demand_tensors(demands), nb_pos, nb_psi, nb_x)

    def step(self, now: float, pos: np.ndarray, supply: np.ndarray, demands: tuple[torch.Tensor, ...],
             nb_pos: torch.Tensor, nb_psi: torch.Tensor, nb_x: torch.Tensor) -> DroneDecision:
        """`decide` with inputs already as tensors: demands = (consumer_pos [M,2], demand [M,r],
        kinds [r]) from `demand_tensors`; neighbours [K,2], [K,G], [K,F] float32."""
        start = time.perf_counter()
        with torch.no_grad():
            vel, x, psi, attn = self.module(torch.from_numpy(pos.astype(np.float32)),
                                            torch.from_numpy(supply.astype(np.float32)), *demands, self.x,
                                            nb_pos, nb_psi, nb_x)
        spent = time.perf_counter() - start
        self.x = x
        x_np = x.numpy().astype(np.float64)
        message = NeighbourMessage(self.agent_id, now, np.asarray(pos, dtype=np.float64),
                                   psi.numpy().astype(np.float64), x_np)
        attention = attn.numpy().astype(np.float64)
        return DroneDecision(vel.numpy().astype(np.float64), message, x_np, attention, int(attention.argmax()), spent)


def demand_tensors(demands: DemandBroadcast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The consumer broadcast as the float32 tensors the policy takes (one conversion per tick)."""
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return f32(demands.consumer_pos), f32(demands.demand), f32(demands.kinds)


def stack_messages(inbox: list[NeighbourMessage], g: int, f: int) -> tuple[torch.Tensor, ...]:
    """Neighbour messages -> (positions [K,2], Psi [K,G], x [K,F]) float32; K may be 0."""
    if not inbox:
        return torch.zeros(0, 2), torch.zeros(0, g), torch.zeros(0, f)
    f32 = lambda rows: torch.from_numpy(np.asarray(rows, dtype=np.float32))  # noqa: E731
    return f32([m.position for m in inbox]), f32([m.psi for m in inbox]), f32([m.x for m in inbox])


def load_drone_modules(path: str | Path, scenario, count: int, any_consumers: bool = False,
                       separate: bool = True) -> tuple[list, dict]:
    """`count` policy modules for `count` drones (separate copies, as on separate computers,
    unless `separate` is False) and the model metadata."""
    from lgtc_ros.policy.learned import LearnedPolicy

    first = LearnedPolicy.load(path, scenario, allow_consumer_change=any_consumers)
    modules = [first.step]
    for _ in range(count - 1):
        if separate and isinstance(first.step, torch.jit.ScriptModule):
            modules.append(torch.jit.load(str(path)))
        else:
            modules.append(first.step)
    return modules, first.meta
