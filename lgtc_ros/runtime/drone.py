"""One drone's policy: its own module and recurrent state, called with tensors.

`DroneAgent.step` is the policy call and nothing else (`run`: the module call; `decision`: its
outputs as numpy views and the message). The decision around it (inputs off the
wire -> tensors -> step -> message and nominal velocity) is `runtime.onboard.OnboardController`,
which the agent node, the swarm runtime and the replay all run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lgtc_ros.comm import DemandBroadcast, NeighbourMessage
from lgtc_ros.policy.export import CLUSTERS_NOT_DEPLOYABLE, ModelKindError, static_forward


@dataclass(frozen=True, slots=True)
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
        # Nothing here trains: with no parameter requiring grad autograd records nothing, so
        # the per-tick call needs no no_grad() context (a frozen export has no parameters at all).
        for p in getattr(module, "parameters", lambda: [])():
            p.requires_grad_(False)
        self.forward = static_forward(module)  # same outputs, less per-operation overhead

    def reset(self) -> None:
        self.x = torch.zeros(self.state_dim)

    def warmup(self, n_consumers: int, n_resources: int, calls: int = 3) -> None:
        """Run the module on dummy inputs: TorchScript profiles and optimizes its first calls,
        which would otherwise cost the first ticks of a mission several milliseconds each."""
        z = torch.zeros
        with torch.no_grad():
            for k in range(calls):
                self.forward(z(2), z(n_resources), z(n_consumers, 2), z(n_consumers, n_resources), z(n_resources),
                             self.x, z(k, 2), z(k, self.feature_dim), z(k, self.state_dim))

    def step(self, now: float, pos: torch.Tensor, supply: torch.Tensor, demands: tuple[torch.Tensor, ...],
             nb_pos: torch.Tensor, nb_psi: torch.Tensor, nb_x: torch.Tensor) -> DroneDecision:
        """One policy step, every input a float32 tensor: pos [2] arena units, supply [r],
        demands = (consumer_pos [M,2], demand [M,r], kinds [r]) from `demand_tensors`;
        neighbours' positions [K,2], Psi [K,G], x [K,F] (K may be 0). `run` then `decision`."""
        return self.decision(now, pos, self.run(pos, supply, demands, nb_pos, nb_psi, nb_x))

    def run(self, pos: torch.Tensor, supply: torch.Tensor, demands: tuple[torch.Tensor, ...], nb_pos: torch.Tensor,
            nb_psi: torch.Tensor, nb_x: torch.Tensor) -> PolicyOutput:
        """The policy call alone (inputs as `step`): the module's outputs, timed; advances x."""
        start = time.perf_counter()
        vel, x, psi, attn = self.forward(pos, supply, *demands, self.x, nb_pos, nb_psi, nb_x)
        spent = time.perf_counter() - start
        self.x = x
        return PolicyOutput(vel, x, psi, attn, spent)

    def decision(self, now: float, pos: torch.Tensor, out: PolicyOutput) -> DroneDecision:
        """`run`'s outputs as the decision: nominal velocity, message (own pos [2] and Psi, x), choice."""
        # float32 views, no copies: the policy computes in float32 and encoding widens to float64
        x_np, attention = out.x.numpy(), out.attention.numpy()
        message = NeighbourMessage(self.agent_id, now, pos.numpy(), out.psi.numpy(), x_np)
        return DroneDecision(out.velocity.numpy(), message, x_np, attention, int(attention.argmax()), out.policy_s)


class PolicyOutput(NamedTuple):
    """The policy module's outputs (float32 tensors: velocity [2], x [F], Psi [G], attention [M])
    and the wall time of the call, s."""

    velocity: torch.Tensor
    x: torch.Tensor
    psi: torch.Tensor
    attention: torch.Tensor
    policy_s: float


_last_demands: tuple[DemandBroadcast, tuple[torch.Tensor, ...]] | None = None


def demand_tensors(demands: DemandBroadcast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The consumer broadcast as the float32 tensors the policy takes. The last conversion is
    kept: every drone of a process (the swarm runtime, `swarm_node`) gets the same broadcast
    object, which is then converted once per tick, not once per drone."""
    global _last_demands
    if _last_demands is not None and _last_demands[0] is demands:
        return _last_demands[1]
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    tensors = f32(demands.consumer_pos), f32(demands.demand), f32(demands.kinds)
    _last_demands = (demands, tensors)
    return tensors


def neighbour_tensors(bodies: np.ndarray, g: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Message bodies [K, 2+G+F] (position, Psi, x; any float dtype) -> (positions [K,2], Psi [K,G],
    x [K,F]) float32 tensors sharing one copy; K may be 0."""
    block = np.asarray(bodies, dtype=np.float32)
    # numpy slices, then from_numpy: a torch slice costs ~4x a numpy one
    return torch.from_numpy(block[:, :2]), torch.from_numpy(block[:, 2:2 + g]), torch.from_numpy(block[:, 2 + g:])


def load_drone_modules(path: str | Path, scenario, count: int, any_consumers: bool = False,
                       separate: bool = True) -> tuple[list, dict]:
    """`count` policy modules for `count` drones (separate copies, as on separate computers,
    unless `separate` is False) and the model metadata."""
    from lgtc_ros.policy.learned import LearnedPolicy

    first = LearnedPolicy.load(path, scenario, allow_consumer_change=any_consumers)
    if first.step is None:  # the hierarchical variant flies batched only
        raise ModelKindError(f"{path}: {CLUSTERS_NOT_DEPLOYABLE}", path)
    modules = [first.step]
    for _ in range(count - 1):
        if separate and isinstance(first.step, torch.jit.ScriptModule):
            modules.append(torch.jit.load(str(path)))
        else:
            modules.append(first.step)
    return modules, first.meta
