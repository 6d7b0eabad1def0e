"""TorchScript export of the actor for ONE drone's decentralized step, with a metadata JSON.

    velocity, x_new, psi, attention = module(pos, supply, consumer_pos, demand, kinds, x, nb_pos, nb_psi, nb_x)

Inputs (arena units, float32): own position [2], own supplies [r], consumer positions [M,2],
open demands [M,r], resource kinds [r] (1 persistent), own previous state x [F], and the
previous-tick messages of the K neighbours within radius C: their positions nb_pos [K,2],
features nb_psi [K,G] and states nb_x [K,F] (K may be 0).
Outputs: velocity command [2] (the mean action, clipped to norm v_max, arena units/s), the new
state x [F], and the message to broadcast this tick: (psi [G], x_new [F]); attention [M].

The same file carries `batched(...)` ([B,N,...] tensors and the neighbour mask) for fast
evaluation; both run the identical `LGTC.core`, and a test proves they agree to 1e-5.
Beside `name.pt` lies `name.json`: shapes, scenario limits, training config, git commit, metrics.
"""
from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Tuple

import torch
from torch import Tensor, nn

from lgtc_ros.policy.heads import ActorCritic
from lgtc_ros.policy.lgtc import LGTC, crowding

FORMAT_VERSION = 1
logger = logging.getLogger("lgtc_ros.policy")


class ModelMismatch(ValueError):
    """An exported model does not fit the scenario it is asked to fly."""


class DroneStep(nn.Module):
    """The actor of an `ActorCritic` as one drone's step (TorchScript-able)."""

    __constants__ = ["v_max", "state_dim", "feature_dim", "crowd_radius", "fused_step", "squash"]

    def __init__(self, model: ActorCritic, v_max: float):
        super().__init__()
        self.cell: LGTC = model.actor
        self.head = model.actor_head
        self.v_max = float(v_max)
        self.state_dim = model.cfg.state_dim
        self.feature_dim = model.cfg.feature_dim
        self.crowd_radius = model.cfg.crowd_radius
        self.squash = bool(model.head_cfg.squash)  # SAC peers fly tanh(mean)
        # eq. (6)'s parameter-only terms, computed once instead of at every step
        with torch.no_grad():
            a, tau_kappa, b_f = model.actor.ode_constants() if model.cfg.consensus else (
                torch.zeros(1, 1), torch.zeros(1), torch.zeros(1))
        self.register_buffer("ode_a", a.clone())
        self.register_buffer("ode_leak", tau_kappa.clone())
        self.register_buffer("ode_bf", b_f.clone())
        # the LGTC actor's per-drone step runs a fused inference graph of the same weights
        self.fused_step = bool(model.cfg.consensus)
        if self.fused_step:
            from lgtc_ros.policy.fused import FusedActor

            self.fused = FusedActor(model.actor, model.actor_head)

    def _velocity(self, y: Tensor) -> Tensor:
        mean = self.head(y)[..., :2]
        if self.squash:
            mean = torch.tanh(mean)
        return self._scale(mean)

    def _scale(self, mean: Tensor) -> Tensor:
        """Mean action in units of v_max -> velocity (arena units/s), norm clipped to v_max."""
        mean = mean.clamp(-1.0, 1.0) * self.v_max
        norm = torch.linalg.vector_norm(mean, 2.0, [-1], True)
        return mean * torch.clamp(self.v_max / norm.clamp_min(1e-12), max=1.0)

    def forward(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
                x: Tensor, nb_pos: Tensor, nb_psi: Tensor, nb_x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.fused_step:
            mean, x_new, psi, attn = self.fused(pos, supply, consumer_pos, demand, kinds, x, nb_pos, nb_psi, nb_x)
            return self._scale(mean), x_new, psi, attn
        k = nb_psi.shape[0]
        if k > 0:  # row-normalized adjacency: the mean of the neighbours' messages
            agg_psi = nb_psi.mean(0)
            agg_x = nb_x.mean(0)
        else:
            agg_psi = torch.zeros(self.feature_dim)
            agg_x = torch.zeros(self.state_dim)
        crowd = crowding(pos.unsqueeze(0) - nb_pos, torch.ones(k), self.crowd_radius)
        y, x_new, psi, aux = self.cell.core(pos, supply, consumer_pos, demand, kinds, x, agg_psi, agg_x, crowd,
                                            (self.ode_a, self.ode_leak, self.ode_bf))
        return self._velocity(y), x_new, psi, aux["attention"]

    @torch.jit.export
    def batched(self, pos: Tensor, supply: Tensor, consumer_pos: Tensor, demand: Tensor, kinds: Tensor,
                x: Tensor, pos_msg: Tensor, psi_prev: Tensor, neighbours: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """[B,N,...] inputs, consumers [B,M,.], neighbours [B,N,N] bool (only agents whose previous
        message arrived); pos_msg/psi_prev/x: the previous tick's messages. Same outputs, batched."""
        mask = neighbours.to(pos.dtype)
        s = mask / mask.sum(-1, keepdim=True).clamp_min(1.0)
        crowd = crowding(pos.unsqueeze(2) - pos_msg.unsqueeze(1), mask, self.crowd_radius)
        y, x_new, psi, aux = self.cell.core(pos, supply, consumer_pos.unsqueeze(1), demand.unsqueeze(1), kinds,
                                            x, torch.matmul(s, psi_prev), torch.matmul(s, x), crowd,
                                            (self.ode_a, self.ode_leak, self.ode_bf))
        return self._velocity(y), x_new, psi, aux["attention"]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export(model: ActorCritic, scenario, out: str | Path, training: dict | None = None,
           metrics: dict | None = None) -> tuple[Path, Path]:
    """Write `out` (TorchScript) and `out.json` (metadata). Returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(DroneStep(model.eval(), scenario.v_max).eval())
    # freezing inlines the weights as constants (faster small-batch inference); keep the
    # second entry point and the sizes callers read
    module = torch.jit.freeze(scripted, preserved_attrs=["batched", "v_max", "state_dim", "feature_dim"])
    module.save(str(out))
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "lgtc_ros drone step",
        "inputs": {"pos": [2], "supply": ["r"], "consumer_pos": ["M", 2], "demand": ["M", "r"], "kinds": ["r"],
                   "x": ["F"], "nb_pos": ["K", 2], "nb_psi": ["K", "G"], "nb_x": ["K", "F"]},
        "outputs": {"velocity": [2], "x_new": ["F"], "psi": ["G"], "attention": ["M"]},
        "shapes": {"M": scenario.n_consumers, "r": scenario.n_resources, "F": model.cfg.state_dim,
                   "G": model.cfg.feature_dim},
        "consensus": model.cfg.consensus,
        "consumer_count_agnostic": True,
        "lgtc": asdict(model.cfg),
        "scenario": {"name": scenario.name, "n_agents": scenario.n_agents, "n_consumers": scenario.n_consumers,
                     "resources": [asdict(r) for r in scenario.resources], "v_max": scenario.v_max,
                     "comm_radius": scenario.comm_radius, "dt": scenario.dt},
        "training": training or {},
        "metrics": metrics or {},
        "git_commit": git_commit(),
        "torch": torch.__version__,
    }
    meta_path = out.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return out, meta_path


def load(path: str | Path, scenario=None, allow_consumer_change: bool = False) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an exported model and its metadata; with `scenario`, check they fit (clear error if not)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if not meta_path.is_file():
        raise ModelMismatch(f"{path}: metadata {meta_path.name} is missing; re-export the model")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelMismatch(f"{path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}; re-export")
    if scenario is not None:
        check_fits(meta, scenario, str(path), allow_consumer_change)
    return torch.jit.load(str(path)), meta


def static_forward(module):
    """`module.forward` run by PyTorch's Static Runtime, or `module` itself where that is unavailable.

    Static Runtime is PyTorch's executor for small CPU inference graphs: it plans memory once and
    skips the TorchScript interpreter's per-operation dispatch, which dominates a drone's step
    (~85 small operations): p50 0.18 -> 0.135 ms here, outputs bit-identical (tests). It lives in
    `torch._C` (pinned torch 2.13.0), hence the fallback to the module on any failure.
    """
    to_static = getattr(torch._C, "_jit_to_static_module", None)
    if to_static is None or not isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        return to_static(module._c)
    except RuntimeError as exc:  # a graph Static Runtime does not support: the interpreter runs it
        logger.info("Static Runtime unavailable for this model (%s); using the TorchScript interpreter", exc)
        return module


def check_fits(meta: dict, scenario, name: str = "model", allow_consumer_change: bool = False) -> None:
    """r, the kind of every resource type and M must match the scenario.

    The network itself is consumer-count agnostic (DeepSets + attention; the paper's Fig. 4 flies
    one policy at M = 2..10), so a different M is allowed when asked for explicitly.
    """
    if meta["shapes"]["r"] != scenario.n_resources:
        raise ModelMismatch(f"{name} was trained for {meta['shapes']['r']} resource types (r), scenario "
                            f"'{scenario.name}' has {scenario.n_resources}")
    if meta["shapes"]["M"] != scenario.n_consumers and not allow_consumer_change:
        hint = (" (the network is consumer-count agnostic: pass --any-consumers to fly it anyway)"
                if meta.get("consumer_count_agnostic") else "")
        raise ModelMismatch(f"{name} was trained for {meta['shapes']['M']} consumers (M), scenario "
                            f"'{scenario.name}' has {scenario.n_consumers}{hint}")
    kinds = [r["kind"] for r in meta["scenario"]["resources"]]
    if kinds != [r.kind for r in scenario.resources]:
        raise ModelMismatch(f"{name} expects resource kinds {kinds}, scenario '{scenario.name}' has "
                            f"{[r.kind for r in scenario.resources]}")
