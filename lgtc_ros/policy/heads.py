"""Actor (Gaussian) and critic: two LGTC networks of the same architecture, each with its own
final MLP [256, 256] and its own consensus state, parameters shared across agents (§III.C).

Actions are velocities in units of v_max: a in R^2, the world receives a * v_max (then clipped
to norm v_max). The mean action clipped to [-1, 1] is what a drone flies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, crowding, mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.5


def cluster_inputs(demand: Tensor, choice: Tensor, supply_msg: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """The hierarchical variant's two summaries from the previous tick's messages (`LGTCConfig.clusters`).

    demand [B,M,r]; choice [B,N] (float index of each drone's previous choice), supply_msg [B,N,r]
    (the supply it carried then), valid [B,N] (1 once it has sent). Returns H [B,N,N], the
    row-normalized same-cluster adjacency (j != i), and feat [B,N,M,r+1]: for each consumer m,
    its demand minus the supply of m's other members, and whether m has other members.
    """
    m = demand.shape[-2]
    member = F.one_hot(choice.long(), m).to(demand.dtype) * valid[..., None]          # [B,N,M]
    same = member @ member.transpose(1, 2)
    same.diagonal(dim1=1, dim2=2).zero_()                                               # j != i
    h = same / same.sum(-1, keepdim=True).clamp_min(1.0)
    committed = member.transpose(1, 2) @ supply_msg                                     # [B,M,r]
    others = committed[:, None] - member[..., None] * supply_msg[:, :, None, :]         # [B,N,M,r]
    crowded = ((member.sum(1, keepdim=True) - member) > 0).to(demand.dtype)             # [B,N,M]
    return h, torch.cat([demand[:, None] - others, crowded[..., None]], -1)


@dataclass(frozen=True)
class HeadConfig:
    hidden: tuple[int, ...] = (256, 256)
    """Final MLP widths (Table I)."""
    init_log_std: float = -0.5
    squash: bool = False
    """True for the SAC peers: actions are tanh of the Gaussian (SAC's bounded actions), so the
    flown mean action is tanh(mean); False: the Gaussian mean clipped to [-1, 1] (PPO family)."""
    value: str = "scalar"
    """"scalar" (IPPO, LGTC-IPPO) or "vector" (MOMAPPO: one value per consumer from
    [key_m, Delta, p, crowd], their attention-weighted sum trained on the scalar return)."""


class ActorCritic(nn.Module):
    def __init__(self, cfg: LGTCConfig, head: HeadConfig = HeadConfig()):
        super().__init__()
        self.cfg, self.head_cfg = cfg, head
        self.actor = LGTC(cfg)
        self.critic = LGTC(cfg)
        self.actor_head = mlp([cfg.output_dim, *head.hidden, 4])
        if head.value not in ("scalar", "vector"):
            raise ValueError(f"value = {head.value!r}: must be scalar or vector")
        if head.value == "vector" and cfg.consensus:
            raise ValueError("the vector (per-consumer) value is the MOMAPPO peer's: no consensus state")
        self.critic_head = mlp([cfg.output_dim, *head.hidden, 1])
        self.bf16_heads = False
        """Training speed-up (not saved): the final MLPs' matrix products in bfloat16 (autocast;
        inputs, outputs and weights stay fp32). Set by `use_bf16` (the trainer's `bf16`)."""
        with torch.no_grad():  # CleanRL's small last layer: near-zero mean actions at the start
            last = self.actor_head[-1]
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[2:].fill_(head.init_log_std)

    def use_bf16(self, on: bool = True) -> "ActorCritic":
        """bfloat16 matrix products where a training step spends its time: the final MLPs and the
        agent-relative DeepSets of both cells (fp32 inputs, outputs, states and weights)."""
        self.bf16_heads = self.actor.bf16_sets = self.critic.bf16_sets = bool(on)
        return self

    def state_keys(self) -> tuple[str, ...]:
        """Per-agent tensors carried across steps: each net's state x and last message Psi, the
        position sent with the last message and whether a message was sent yet (0 after reset);
        clusters: also the choice and supply sent with it."""
        flat = ("x_pi", "psi_pi", "x_v", "psi_v", "pos_msg", "valid")
        return (*flat, "choice", "supply_msg") if self.cfg.clusters else flat

    def initial_state(self, batch: int, agents: int) -> dict[str, Tensor]:
        """Zeros for every `state_keys()` entry, [batch, agents, width]."""
        f, g, r = self.cfg.state_dim, self.cfg.feature_dim, self.cfg.n_resources
        width = {"x_pi": f, "psi_pi": g, "x_v": f, "psi_v": g, "pos_msg": 2, "supply_msg": r}
        return {k: torch.zeros(batch, agents, width[k]) if k in width else torch.zeros(batch, agents)
                for k in self.state_keys()}

    @staticmethod
    def _local_inputs(obs: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Batched observation tensors -> per-agent inputs; consumers [B,1,M,.] broadcast to agents."""
        return obs["pos"], obs["supply"], obs["consumer_pos"][:, None], obs["demand"][:, None], obs["kinds"]

    def crowd(self, pos: Tensor, state: dict[str, Tensor], S: Tensor) -> Tensor:
        """[B,N,3] crowding from the neighbours' previous-tick message positions."""
        offsets = pos[:, :, None, :] - state["pos_msg"][:, None, :, :]
        mask = (S > 0).to(pos.dtype) * state["valid"][:, None, :]
        return crowding(offsets, mask, self.cfg.crowd_radius)

    def _clusters(self, obs: dict[str, Tensor], state: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        if not self.cfg.clusters:
            return None
        return cluster_inputs(obs["demand"], state["choice"], state["supply_msg"], state["valid"])

    def actor_step(self, obs: dict[str, Tensor], state: dict[str, Tensor], S: Tensor, crowd: Tensor,
                   clusters: tuple[Tensor, Tensor] | None = None):
        """Batched: obs tensors [B,...], state [B,N,.], S [B,N,N] row-normalized, crowd [B,N,3],
        clusters (H, feat) from `cluster_inputs` for the hierarchical variant.
        Returns (mean [B,N,2], log_std [B,N,2], x_new, psi, aux)."""
        x, psi_prev = state["x_pi"], state["psi_pi"]
        y, x_new, psi, aux = self.actor.core(*self._local_inputs(obs), x, S @ psi_prev, S @ x, crowd,
                                             **self._cluster_args(clusters, x))
        out = self._head(self.actor_head, y)
        mean = torch.tanh(out[..., :2]) if self.head_cfg.squash else out[..., :2]
        return mean, out[..., 2:].clamp(LOG_STD_MIN, LOG_STD_MAX), x_new, psi, aux

    @staticmethod
    def _cluster_args(clusters: tuple[Tensor, Tensor] | None, x: Tensor) -> dict[str, Tensor]:
        """core()'s cluster inputs for the hierarchical variant (none for the flat cell)."""
        if clusters is None:
            return {}
        h, feat = clusters
        return {"agg_cx": h @ x, "cluster_feat": feat}

    def critic_step(self, obs: dict[str, Tensor], state: dict[str, Tensor], S: Tensor, crowd: Tensor,
                    clusters: tuple[Tensor, Tensor] | None = None):
        """Batched value [B,N], new state, message, aux."""
        x, psi_prev = state["x_v"], state["psi_v"]
        y, x_new, psi, aux = self.critic.core(*self._local_inputs(obs), x, S @ psi_prev, S @ x, crowd,
                                              **self._cluster_args(clusters, x))
        if self.head_cfg.value == "vector":  # V = sum_m Xi_m V_m, V_m from consumer m's key
            keys = aux["keys"]
            rest = torch.cat([aux["delta"], obs["pos"], crowd], -1).unsqueeze(-2).expand(list(keys.shape[:-1]) + [-1])
            per_consumer = self._head(self.critic_head, torch.cat([keys, rest], -1)).squeeze(-1)   # [...,M]
            return (aux["attention"] * per_consumer).sum(-1), x_new, psi, aux
        return self._head(self.critic_head, y).squeeze(-1), x_new, psi, aux

    def _head(self, head: nn.Module, y: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_heads):
            return head(y).float()

    def value(self, obs: dict[str, Tensor], state: dict[str, Tensor], S: Tensor) -> Tensor:
        return self.critic_step(obs, state, S, self.crowd(obs["pos"], state, S), self._clusters(obs, state))[0]

    def step(self, obs: dict[str, Tensor], state: dict[str, Tensor], S: Tensor):
        """Both nets for one control step. Returns (mean, log_std, value, new_state, aux)."""
        crowd = self.crowd(obs["pos"], state, S)
        clusters = self._clusters(obs, state)
        mean, log_std, x_pi, psi_pi, aux = self.actor_step(obs, state, S, crowd, clusters)
        value, x_v, psi_v, aux_v = self.critic_step(obs, state, S, crowd, clusters)
        aux = {**aux, "f_v": aux_v["f"]}
        new = {"x_pi": x_pi, "psi_pi": psi_pi, "x_v": x_v, "psi_v": psi_v, "pos_msg": obs["pos"],
               "valid": torch.ones_like(state["valid"])}
        if clusters is not None:  # both nets' clusters follow the actor's choice (the one flown)
            new.update(choice=aux["choice"].to(obs["pos"].dtype), supply_msg=obs["supply"])
            aux["cluster_rows"] = clusters[0].sum(-1)
        return mean, log_std, value, new, aux


def obs_dict(obs) -> dict[str, Tensor]:
    """`world.Observation` -> the dict of tensors the networks take."""
    return {"pos": obs.pos, "supply": obs.supply, "consumer_pos": obs.consumer_pos,
            "demand": obs.demand, "kinds": obs.kinds}
