"""Actor (Gaussian) and critic: two LGTC networks of the same architecture, each with its own
final MLP [256, 256] and its own consensus state, parameters shared across agents (§III.C).

Actions are velocities in units of v_max: a in R^2, the world receives a * v_max (then clipped
to norm v_max). The mean action clipped to [-1, 1] is what a drone flies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.5


def recurrent_keys() -> tuple[str, ...]:
    """Per-agent recurrent tensors carried across steps: each net's state x and last message Psi."""
    return ("x_pi", "psi_pi", "x_v", "psi_v")


@dataclass(frozen=True)
class HeadConfig:
    hidden: tuple[int, ...] = (256, 256)
    """Final MLP widths (Table I)."""
    init_log_std: float = -0.5


class ActorCritic(nn.Module):
    def __init__(self, cfg: LGTCConfig, head: HeadConfig = HeadConfig()):
        super().__init__()
        self.cfg, self.head_cfg = cfg, head
        self.actor = LGTC(cfg)
        self.critic = LGTC(cfg)
        self.actor_head = mlp([cfg.output_dim, *head.hidden, 4])
        self.critic_head = mlp([cfg.output_dim, *head.hidden, 1])
        with torch.no_grad():  # CleanRL's small last layer: near-zero mean actions at the start
            last = self.actor_head[-1]
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[2:].fill_(head.init_log_std)

    def initial_state(self, batch: int, agents: int) -> dict[str, Tensor]:
        f, g = self.cfg.state_dim, self.cfg.feature_dim
        z = lambda d: torch.zeros(batch, agents, d)  # noqa: E731
        return {"x_pi": z(f), "psi_pi": z(g), "x_v": z(f), "psi_v": z(g)}

    @staticmethod
    def _local_inputs(obs: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Batched observation tensors -> per-agent inputs; consumers [B,1,M,.] broadcast to agents."""
        return obs["pos"], obs["supply"], obs["consumer_pos"][:, None], obs["demand"][:, None], obs["kinds"]

    def actor_step(self, obs: dict[str, Tensor], x: Tensor, psi_prev: Tensor, S: Tensor):
        """Batched: obs tensors [B,...], x/psi_prev [B,N,.], S [B,N,N] row-normalized.
        Returns (mean [B,N,2], log_std [B,N,2], x_new, psi, aux)."""
        y, x_new, psi, aux = self.actor.core(*self._local_inputs(obs), x, S @ psi_prev, S @ x)
        out = self.actor_head(y)
        return out[..., :2], out[..., 2:].clamp(LOG_STD_MIN, LOG_STD_MAX), x_new, psi, aux

    def critic_step(self, obs: dict[str, Tensor], x: Tensor, psi_prev: Tensor, S: Tensor):
        """Batched value [B,N], new state, message, aux."""
        y, x_new, psi, aux = self.critic.core(*self._local_inputs(obs), x, S @ psi_prev, S @ x)
        return self.critic_head(y).squeeze(-1), x_new, psi, aux

    def step(self, obs: dict[str, Tensor], state: dict[str, Tensor], S: Tensor):
        """Both nets for one control step. Returns (mean, log_std, value, new_state, aux)."""
        mean, log_std, x_pi, psi_pi, aux = self.actor_step(obs, state["x_pi"], state["psi_pi"], S)
        value, x_v, psi_v, aux_v = self.critic_step(obs, state["x_v"], state["psi_v"], S)
        aux = {**aux, "f_v": aux_v["f"]}
        return mean, log_std, value, {"x_pi": x_pi, "psi_pi": psi_pi, "x_v": x_v, "psi_v": psi_v}, aux


def obs_dict(obs) -> dict[str, Tensor]:
    """`world.Observation` -> the dict of tensors the networks take."""
    return {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos,
            "demand": obs.demand, "kinds": obs.kinds}
