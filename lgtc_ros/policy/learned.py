"""A trained policy as a callable for batched rollouts: `policy(world) -> action [B,N,2]`.

It flies the mean action (deterministic) and carries, per env and agent, the state a drone
carries: its consensus state x and the message it sent last tick (position, Psi, x). A
neighbour's message counts only after that neighbour has sent one (`valid`), as on a radio.
Loads either an exported TorchScript model (`models/*.pt` + `.json`) or a trainer output
(`policy.pt` / `checkpoint.pt`, read by `policy.checkpoint`: no trainer is imported); both go
through the same `DroneStep.batched`. The hierarchical variant (`LGTCConfig.clusters`) has no
per-drone step yet (its cluster summaries need a relay the runtime does not have): it flies
batched only, as `ClusteredPolicy`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lgtc_ros.policy.checkpoint import training_v_max
from lgtc_ros.policy.export import EXPORTED, DroneStep, ModelMismatch, load, mean_to_velocity, model_format
from lgtc_ros.policy.heads import obs_dict
from lgtc_ros.policy.hrl import load_trainer_policy
from lgtc_ros.policy.lgtc import row_normalized


class LearnedPolicy:
    def __init__(self, step, name: str = "learned", meta: dict | None = None):
        self.step = step
        self.name = name
        self.meta = meta or {}
        self.state: dict[str, Tensor] | None = None
        self.last_attention: Tensor | None = None

    @classmethod
    def load(cls, path: str | Path, scenario, allow_consumer_change: bool = False) -> "LearnedPolicy":
        """Exported model (checked against `scenario`) or a trainer's policy.pt/checkpoint.pt.
        Anything wrong with the file is a `ModelError` naming it (`policy.export`)."""
        path = Path(path)
        if model_format(path) == EXPORTED:
            module, meta = load(path, scenario, allow_consumer_change=allow_consumer_change)
            return cls(module, path.stem, meta)
        model, ck = load_trainer_policy(path)  # an ActorCritic, or a model with its own `drone_step` (hrl)
        if model.cfg.n_resources != scenario.n_resources:
            raise ModelMismatch(f"{path} was trained for {model.cfg.n_resources} resource types (r), "
                                f"scenario '{scenario.name}' has {scenario.n_resources}", path)
        v_max = training_v_max(ck)
        if getattr(model.cfg, "clusters", False):
            return ClusteredPolicy(model.eval(), v_max, path.parent.name or path.stem, {"source": str(path)})
        make_step = getattr(model, "drone_step", None)
        step = make_step(v_max) if make_step is not None else DroneStep(model, v_max)
        return cls(step.eval(), path.parent.name or path.stem, {"source": str(path)})

    def reset(self) -> None:
        self.state = None

    def _init(self, b: int, n: int) -> None:
        f, g = self.step.state_dim, self.step.feature_dim
        self.state = {"x": torch.zeros(b, n, f), "psi": torch.zeros(b, n, g), "pos_msg": torch.zeros(b, n, 2),
                      "valid": torch.zeros(b, n, dtype=torch.bool)}

    def __call__(self, world) -> Tensor:
        obs = world.observe()
        b, n = obs.active.shape
        if self.state is None or self.state["x"].shape[:2] != (b, n):
            self._init(b, n)
        st = self.state
        neighbours = obs.neighbours & st["valid"][:, None, :]
        with torch.no_grad():
            vel, x, psi, attn = self.step.batched(obs.pos, obs.supply, obs.consumer_pos, obs.demand, obs.kinds,
                                                  st["x"], st["pos_msg"], st["psi"], neighbours)
        active = obs.active
        # landed drones keep their last state and stop broadcasting
        st["x"] = torch.where(active[..., None], x, st["x"])
        st["psi"] = torch.where(active[..., None], psi, st["psi"])
        st["pos_msg"] = obs.pos.clone()
        st["valid"] = active.clone()
        self.last_attention = attn
        return vel * active[..., None]


class ClusteredPolicy(LearnedPolicy):
    """The hierarchical variant (an `ActorCritic` with `clusters`), batched: the actor's mean
    action, with the recurrent state the trainer carries (`ActorCritic.initial_state`). As in
    `LearnedPolicy`, a neighbour's message counts once it has sent one and landed drones keep
    their state. `step` stays None: there is no per-drone module to hand to the runtime."""

    def __init__(self, model, v_max: float, name: str, meta: dict):
        super().__init__(None, name, meta)
        self.model, self.v_max = model, float(v_max)

    def __call__(self, world) -> Tensor:
        obs = world.observe()
        b, n = obs.active.shape
        if self.state is None or self.state["x_pi"].shape[:2] != (b, n):
            self.state = self.model.initial_state(b, n)
        st, od = self.state, obs_dict(obs)
        s = row_normalized(obs.neighbours & st["valid"].bool()[:, None, :])
        with torch.no_grad():
            mean, _, _, new, aux = self.model.step(od, st, s)
        active = obs.active
        for k, v in new.items():
            keep = active.reshape(b, n, *([1] * (v.dim() - 2)))
            st[k] = torch.where(keep, v, st[k]) if k != "valid" else active.to(v.dtype)
        self.last_attention = aux["attention"]
        return mean_to_velocity(mean, self.v_max) * active[..., None]
