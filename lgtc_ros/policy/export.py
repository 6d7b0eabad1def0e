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
Beside `name.pt` lies `name.json`: shapes, scenario limits, training config, git commit, metrics,
and the contraction certificate (policy/certificate.py): `contraction_rate` (eq. (9)'s c, worst
case over every admissible input), `state_bound`, `certificate`. A model whose certified c is
not > 0 is refused (`NotContractive`), before anything is written. Files exported before the
certificate existed lack the three fields and still load.
"""
from __future__ import annotations

import json
import logging
import subprocess
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Tuple

import torch
from torch import Tensor, nn

from lgtc_ros.policy.heads import ActorCritic
from lgtc_ros.policy.lgtc import LGTC, crowding

FORMAT_VERSION = 1
logger = logging.getLogger("lgtc_ros.policy")


class ModelError(ValueError):
    """A model file cannot be used. The message names the file and what is wrong with it, on one
    line; `path` is the file (None if not known)."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(" ".join(str(message).split("\n")))
        self.path = Path(path) if path is not None else None


class ModelNotFound(ModelError):
    """No file at the path: "no model at X"."""


class ModelCorrupt(ModelError):
    """A PyTorch archive that cannot be read: truncated (an interrupted copy or save) or damaged."""


class NotAModel(ModelError):
    """Not a model at all: a text file, an archive of something else, a folder."""


class ModelKindError(ModelError):
    """A model of the other kind than the operation takes: an exported model (TorchScript + .json)
    where a trainer output (policy.pt, checkpoint.pt) is needed, or the reverse."""


class ModelMismatch(ModelError):
    """A model does not fit the scenario it is asked to fly (resource types, kinds, consumers)."""


class ModelMetadataError(ModelMismatch):
    """The metadata that says what a model fits is missing, malformed, of another format version
    or contradicts the model (a kind of ModelMismatch: without it, fit cannot be checked)."""


class NotContractive(ModelError):
    """An LGTC model whose certified contraction rate (eq. (9), worst case over every admissible
    input: policy/certificate.py) is not > 0: its state ODE is not certified to contract, so
    `export` refuses it."""


EXPORTED, TRAINER = "exported", "trainer output"


def mean_to_velocity(mean: Tensor, v_max: float) -> Tensor:
    """Mean action in units of v_max -> velocity (arena units/s), norm clipped to v_max."""
    mean = mean.clamp(-1.0, 1.0) * v_max
    norm = torch.linalg.vector_norm(mean, 2.0, [-1], True)
    return mean * torch.clamp(v_max / norm.clamp_min(1e-12), max=1.0)


CLUSTERS_NOT_DEPLOYABLE = ("the hierarchical-cluster variant (clusters = true) has no per-drone step: its "
                           "cluster summaries need a relay the runtime does not have yet; evaluate it batched "
                           "(lgtc eval / sweep with the trainer's policy.pt)")


class DroneStep(nn.Module):
    """The actor of an `ActorCritic` as one drone's step (TorchScript-able)."""

    __constants__ = ["v_max", "state_dim", "feature_dim", "crowd_radius", "fused_step", "squash"]

    def __init__(self, model: ActorCritic, v_max: float):
        super().__init__()
        if model.cfg.clusters:  # its inputs include cluster summaries this step has no way to receive
            raise ModelKindError(CLUSTERS_NOT_DEPLOYABLE)
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
        self.fused_step = bool(model.cfg.consensus) and not model.cfg.zero_s  # (the fused graph has no S = 0 ablation)
        if self.fused_step:
            from lgtc_ros.policy.fused import FusedActor

            self.fused = FusedActor(model.actor, model.actor_head)

    def _velocity(self, y: Tensor) -> Tensor:
        mean = self.head(y)[..., :2]
        if self.squash:
            mean = torch.tanh(mean)
        return self._scale(mean)

    def _scale(self, mean: Tensor) -> Tensor:
        return mean_to_velocity(mean, self.v_max)

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
    from lgtc_ros.outputs import replace_protected
    from lgtc_ros.policy.certificate import certify, metadata_fields

    if getattr(model, "drone_step", None) is not None:  # the hrl-grouping peer: its own step, no certificate
        from lgtc_ros.policy.hrl import export_hrl

        return export_hrl(model, scenario, out, training, metrics)
    out = Path(out)
    if model.cfg.clusters:
        raise ModelKindError(f"refusing to export {out.name}: {CLUSTERS_NOT_DEPLOYABLE}", out)
    meta_path = out.with_suffix(".json")
    cert = certify(model)  # None without the consensus state: no ODE to certify
    if cert is not None and not cert.certified:
        raise NotContractive(
            f"refusing to export {out.name}: not contractive, certified contraction rate c = "
            f"{cert.contraction_rate:.4g} <= 0 (eq. (9)'s worst case, f = 0 with neighbours, is min tau = "
            f"tau[{cert.argmin_feature}]); train with a larger contractivity penalty (--set alpha=...)", out)
    for path in (out, meta_path):
        replace_protected(path)  # the shipped models are never written over
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(DroneStep(model.eval(), scenario.v_max).eval())
    # freezing inlines the weights as constants (faster small-batch inference); keep the
    # second entry point and the sizes callers read
    module = torch.jit.freeze(scripted, preserved_attrs=["batched", "v_max", "state_dim", "feature_dim"])
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
        **metadata_fields(cert),
        "git_commit": git_commit(),
        "torch": torch.__version__,
    }
    return write_model(module, meta, out)


def write_model(module, meta: dict, out: Path) -> tuple[Path, Path]:
    """`out` (the TorchScript module) and its `.json` (`meta`), both written under temporary names,
    then renamed: a crash leaves the old pair or the new one."""
    import os

    from lgtc_ros.outputs import temp_name

    meta_path = out.with_suffix(".json")
    tmp_pt, tmp_meta = temp_name(out), temp_name(meta_path)
    try:
        module.save(str(tmp_pt))
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp_pt, out)
        os.replace(tmp_meta, meta_path)
    finally:
        tmp_pt.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return out, meta_path


def model_format(path: str | Path) -> str:
    """`EXPORTED` (TorchScript, by `export`) or `TRAINER` (torch.save: a run's policy.pt or
    checkpoint.pt), from the archive's table of contents, without loading it. Raises
    `ModelNotFound`, `ModelCorrupt` (truncated, damaged) or `NotAModel`."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"no model at {path}", path)
    if path.is_dir():
        raise NotAModel(f"{path} is a folder, not a model file (a model is a .pt file)", path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelCorrupt(f"{path}: cannot be read ({exc.strerror})", path) from None
    if not head:
        raise ModelCorrupt(f"{path} is empty (0 bytes): an interrupted copy or save? copy or export it again", path)
    if head != b"PK\x03\x04":
        raise NotAModel(f"{path} is not a model file (not a PyTorch archive): expected an exported model "
                        f"(lgtc export) or a trainer's policy.pt / checkpoint.pt", path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelCorrupt(f"{path} is truncated or corrupt (an incomplete PyTorch archive: {exc}); "
                           f"copy or export it again", path) from None
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return EXPORTED
    if any(n.endswith("/data.pkl") for n in names):
        return TRAINER
    raise NotAModel(f"{path} is a zip archive but not a PyTorch model", path)


def read_metadata(path: str | Path) -> dict:
    """The `.json` beside an exported model, checked: present, JSON, this format version, with the
    fields `check_fits` and the runtime read. Raises `ModelMetadataError`."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise ModelMetadataError(f"{path}: metadata {meta_path.name} is missing (an exported model needs the "
                                 f".json `lgtc export` writes beside it); re-export the model", path)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelMetadataError(f"{meta_path}: malformed metadata (not JSON: {exc.msg} at line {exc.lineno} "
                                 f"column {exc.colno}); re-export the model", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelMetadataError(f"{meta_path}: unreadable metadata ({exc}); re-export the model", path) from None
    if not isinstance(meta, dict):
        raise ModelMetadataError(f"{meta_path}: malformed metadata (a JSON {type(meta).__name__}, not an "
                                 f"object); re-export the model", path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelMetadataError(f"{path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}; "
                                 f"re-export", path)
    try:
        shapes = meta["shapes"]
        for key in ("M", "r", "F", "G"):
            if not isinstance(shapes[key], int) or shapes[key] < 0:
                raise TypeError(f"shapes.{key}")
        kinds = [r["kind"] for r in meta["scenario"]["resources"]]
        if len(kinds) != shapes["r"] or not all(k in ("instantaneous", "persistent") for k in kinds):
            raise TypeError("scenario.resources")
    except (KeyError, TypeError, AttributeError) as exc:
        field = exc.args[0] if exc.args else "?"
        raise ModelMetadataError(f"{meta_path}: malformed metadata (field {field!r} missing or invalid); "
                                 f"re-export the model", path) from None
    return meta


def load(path: str | Path, scenario=None, allow_consumer_change: bool = False) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an exported model and its metadata; with `scenario`, check they fit. Every problem is
    a `ModelError` naming the file (see `model_format`, `read_metadata`, `check_fits`)."""
    path = Path(path)
    if model_format(path) != EXPORTED:
        raise ModelKindError(f"{path} is a trainer output (policy.pt / checkpoint.pt), not an exported model: "
                             f"export it first (lgtc export --policy {path} --out NAME.pt)", path)
    meta = read_metadata(path)
    if scenario is not None:
        check_fits(meta, scenario, str(path), allow_consumer_change)
    try:
        module = torch.jit.load(str(path))
    except (RuntimeError, NotImplementedError, ValueError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelCorrupt(f"{path} is corrupt (TorchScript cannot load it: {first[:160]}); export it again",
                           path) from None
    for attr, key in (("state_dim", "F"), ("feature_dim", "G")):
        if not hasattr(module, attr):
            raise NotAModel(f"{path} is a TorchScript module but not an lgtc_ros drone step (no {attr})", path)
        if getattr(module, attr) != meta["shapes"][key]:
            raise ModelMetadataError(f"{path}: metadata {path.with_suffix('.json').name} says {key} = "
                                     f"{meta['shapes'][key]}, the model has {getattr(module, attr)}: the .json "
                                     f"belongs to another model; re-export", path)
    return module, meta


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
