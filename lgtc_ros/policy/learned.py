"""A trained policy as a callable for batched rollouts: `policy(world) -> action [B,N,2]`.

It flies the mean action (deterministic) and carries, per env and agent, the state a drone
carries: its consensus state x and the message it sent last tick (position, Psi, x). A
neighbour's message counts only after that neighbour has sent one (`valid`), as on a radio.
Loads either an exported TorchScript model (`models/*.pt` + `.json`) or a trainer output
(`policy.pt` / `checkpoint.pt`, read by `policy.checkpoint`: no trainer is imported); both go
through the same `DroneStep.batched`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lgtc_ros.policy.checkpoint import training_v_max
from lgtc_ros.policy.export import EXPORTED, DroneStep, ModelMismatch, load, model_format
from lgtc_ros.policy.hrl import load_trainer_policy


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

