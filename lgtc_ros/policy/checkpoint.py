"""Trainer outputs on disk: checkpoints, `policy.pt`, and the `ActorCritic` they rebuild.

The format lives here, next to the networks, so that deployment code (`policy.learned`, the
runtime, the nodes) loads a trainer's output without importing the trainers (`lgtc_ros.train`
imports the simulator). The trainers write through the same functions.

* `checkpoint.pt` (ippo.py, every few updates): {"args": the trainer's Args as a dict, "model":
  state_dict, "update", "env_steps", "opt", "world", "rng", ...}; the networks are rebuilt from
  `args` (`build_model`).
* `policy.pt` (any trainer, at the end): {"model": state_dict, "args", "lgtc": LGTCConfig,
  "head": HeadConfig, "scenario": the training scenario's file, "v_max": its speed bound}.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lgtc_ros.policy.export import (EXPORTED, ModelCorrupt, ModelKindError, ModelMetadataError, ModelNotFound,
                                    NotAModel, model_format)
from lgtc_ros.policy.heads import ActorCritic, HeadConfig
from lgtc_ros.policy.lgtc import LGTCConfig


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomic write: a crash while saving never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, missing: str | None = None) -> dict[str, Any]:
    """A trainer's file (checkpoint.pt, policy.pt) as the dict it saved. Every problem is a
    `ModelError` naming the file: missing (`missing`, default "no checkpoint at X (train without
    --resume first)"), truncated or corrupt, not a model, or an exported model instead."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(missing or f"no checkpoint at {path} (train without --resume first)", path)
    if model_format(path) == EXPORTED:
        raise ModelKindError(f"{path} is an exported model (TorchScript, for flying), not a trainer output: "
                             f"this needs a run's policy.pt or checkpoint.pt", path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, AttributeError,
            ModuleNotFoundError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelCorrupt(f"{path} is truncated or corrupt (torch cannot load it: {first[:160]})", path) from None
    if not isinstance(ck, dict) or not isinstance(ck.get("model"), Mapping) or not isinstance(ck.get("args"), Mapping):
        raise NotAModel(f"{path} is a PyTorch file but not an lgtc_ros policy or checkpoint (no 'model' and "
                        f"'args' in it)", path)
    return ck


def _optional(args: Any, name: str) -> Any:
    """A setting that older checkpoints lack (False when absent)."""
    return (args if isinstance(args, Mapping) else vars(args)).get(name, False)


def build_model(args: Any, n_resources: int) -> ActorCritic:
    """The IPPO family's networks from its training arguments (ippo.Args or that dataclass as a
    dict, as stored in a checkpoint): lgtc-ippo has the consensus state, momappo a value per consumer."""
    get = args.__getitem__ if isinstance(args, Mapping) else lambda name: getattr(args, name)
    algo = get("algo")
    cfg = LGTCConfig(n_resources=n_resources, feature_dim=get("feature_dim"), state_dim=get("state_dim"),
                     unfolds=get("unfolds"), ode_dt=get("ode_dt"), consensus=algo == "lgtc-ippo",
                     pooling="weighted" if algo == "momappo" else "argmax",
                     zero_s=bool(_optional(args, "zero_s")), clusters=bool(_optional(args, "clusters")))
    return ActorCritic(cfg, HeadConfig(hidden=tuple(get("hidden")), value="vector" if algo == "momappo" else "scalar"))


def save_policy(path: str | Path, model: ActorCritic, args: Any, scenario_source: str) -> None:
    """The trained networks with what is needed to rebuild them (not TorchScript: see export.py).
    `args` is the trainer's argument dataclass."""
    from lgtc_ros.scenario import load_scenario

    save_checkpoint(path, {"model": model.state_dict(), "args": asdict(args), "lgtc": asdict(model.cfg),
                           "head": asdict(model.head_cfg), "scenario": scenario_source,
                           "v_max": load_scenario(scenario_source).v_max})


def load_policy(path: str | Path) -> tuple[ActorCritic, dict]:
    """Rebuild an `ActorCritic` (eval mode) from `policy.pt` or a training checkpoint; also
    returns the loaded dict. Problems are `ModelError`s naming the file ("no model at X", ...)."""
    path = Path(path)
    if path.exists() and model_format(path) == EXPORTED:
        raise ModelKindError(f"{path} is an exported model already (TorchScript + {path.with_suffix('.json').name}); "
                             f"this takes a trainer output: a run's policy.pt or checkpoint.pt", path)
    ck = load_checkpoint(path, missing=f"no model at {path}")
    try:
        if "lgtc" in ck:
            cfg = LGTCConfig(**ck["lgtc"])
            head = HeadConfig(**{**ck["head"], "hidden": tuple(ck["head"]["hidden"])})
            model = ActorCritic(cfg, head)
        else:  # a training checkpoint: only the arguments say which networks
            model = build_model(ck["args"], _training_scenario(ck, path).n_resources)
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMetadataError(f"{path}: its stored configuration does not rebuild its networks ({first[:160]})",
                                 path) from None
    model.eval()
    return model, ck


def _training_scenario(ck: dict, path: str | Path):
    from lgtc_ros.scenario import ScenarioError, load_scenario, resolve_scenario

    name = ck.get("args", {}).get("scenario")
    try:
        return load_scenario(resolve_scenario(name))
    except (ScenarioError, OSError, TypeError) as exc:
        raise ModelMetadataError(f"{path}: its training scenario {name!r} cannot be loaded ({exc})", path) from None


def training_v_max(ck: dict) -> float:
    """The speed bound actions are scaled by: the policy's actions are in units of the *training*
    scenario's v_max (stored in policy.pt; read from the scenario for a training checkpoint)."""
    if ck.get("v_max"):
        return ck["v_max"]
    return _training_scenario(ck, "checkpoint").v_max
