"""The models shipped with the package (`models/*.pt` + metadata JSON) and which one flies a scenario.

    from lgtc_ros.policy.shipped import default_model
    path = default_model(scenario)        # e.g. models/lgtc_discharge_5x3.pt for discharge_5x3

Preference, among the shipped LGTC models (the ones with the consensus state) whose resource
kinds and consumer count fit the scenario:
  1. trained on this scenario or its training family: the scenario's name is the model's
     scenario (`meta["scenario"]["name"]`) or its training scenario (`meta["training"]["args"]
     ["scenario"]`), e.g. lgtc_discharge_5x3.pt (trained on discharge_train_5x3) for discharge_5x3;
  2. any other, the one trained for the closest team size first (ratio of N), then by file
     name: lgtc_scale_100x4.pt for a team of 50 with 4 consumers, lgtc_paper_10x4.pt for 20.
With `any_consumers`, a consumer-count agnostic model trained for another M fits too (after the
above, closest M first). When none fits, `NoShippedModel` says why each shipped model does not.

Reads only the JSON metadata: no torch, no trainer, cheap to import from a node.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from lgtc_ros.scenario import Scenario, load_scenario, resolve_scenario

PACKAGE = "lgtc_ros"
FORMAT_VERSION = 1  # = lgtc_ros.policy.export.FORMAT_VERSION (not imported: that module loads torch)


class NoShippedModel(ValueError):
    """No shipped model fits the scenario; the message lists each model and why it does not fit."""


def models_dir() -> Path:
    """The package's `models/` folder: the source tree, else the installed share/lgtc_ros/models
    (found like `lgtc_ros.scenario.config_dir()`: colcon/ament first, then pip's data location)."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "models").is_dir() and (root / "package.xml").is_file():  # a checkout (or symlink install)
        return root / "models"
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "models"
    except Exception:  # noqa: BLE001 - ament is optional; fall back to the pip data location
        return Path(sys.prefix) / "share" / PACKAGE / "models"


@dataclass(frozen=True)
class ShippedModel:
    """One `name.pt` with what its `name.json` says (meta None when missing or unreadable:
    `problem` says why)."""

    path: Path
    meta: dict | None
    problem: str = ""
    n_consumers: int = 0
    """M it was trained for."""
    kinds: tuple[str, ...] = ()
    """The kind of each resource type, in order."""
    n_agents: int = 0
    """N of the scenario it was exported for (0 if the metadata does not say)."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def algo(self) -> str:
        return str(_training_args(self.meta).get("algo", "lgtc-ippo" if self.is_lgtc else "unknown algo"))

    @property
    def is_lgtc(self) -> bool:
        """LGTC = the consensus state (lgtc-ippo); the ippo/momappo/vdn/qmix peers have none."""
        return bool(self.meta and self.meta.get("consensus"))

    @property
    def scenario_names(self) -> set[str]:
        """The scenario it was exported for and the one it was trained on (a path counts by its stem)."""
        names = {str(self.meta.get("scenario", {}).get("name", ""))} if self.meta else set()
        trained = _training_args(self.meta).get("scenario")
        if trained:
            names |= {str(trained), Path(str(trained)).stem}
        return names - {""}


def shipped_models(folder: str | Path | None = None) -> list[ShippedModel]:
    """Every `*.pt` in `folder` (default `models_dir()`), by file name, with its metadata."""
    folder = Path(folder) if folder is not None else models_dir()
    out = []
    for pt in sorted(folder.glob("*.pt")):
        meta_path = pt.with_suffix(".json")
        if not meta_path.is_file():
            out.append(ShippedModel(pt, None, f"no metadata {meta_path.name}"))
            continue
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                out.append(ShippedModel(pt, None, f"format_version {meta.get('format_version')} != {FORMAT_VERSION}"))
                continue
            m = int(meta["shapes"]["M"])
            kinds = tuple(str(r["kind"]) for r in meta["scenario"]["resources"])
            agents = int(meta["scenario"].get("n_agents", 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            out.append(ShippedModel(pt, None, f"unreadable metadata {meta_path.name} ({type(exc).__name__})"))
            continue
        out.append(ShippedModel(pt, meta, n_consumers=m, kinds=kinds, n_agents=agents))
    return out


def default_model(scenario: Scenario | str | Path, any_consumers: bool = False,
                  folder: str | Path | None = None) -> Path:
    """The shipped model that flies `scenario` (a `Scenario`, a bundled name or a YAML path).

    Raises `NoShippedModel` (a ValueError) naming the scenario, every shipped model and why it
    does not fit."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(resolve_scenario(scenario))
    folder = Path(folder) if folder is not None else models_dir()
    models = shipped_models(folder)
    kinds = tuple(r.kind for r in scenario.resources)
    own = {scenario.name, Path(scenario.source).stem} - {"", "<dict>"}
    ranked: list[tuple[tuple, Path]] = []
    why: list[str] = []
    for m in models:
        if m.meta is None:
            why.append(f"{m.name}: {m.problem}")
        elif not m.is_lgtc:
            why.append(f"{m.name}: not an LGTC model ({m.algo})")
        elif m.kinds != kinds:
            why.append(f"{m.name}: resource kinds {_short(m.kinds)} != {_short(kinds)}")
        elif m.n_consumers != scenario.n_consumers and not (any_consumers and m.meta.get("consumer_count_agnostic")):
            why.append(f"{m.name}: trained for M={m.n_consumers} consumers, not {scenario.n_consumers}")
        else:
            family = 0 if own & m.scenario_names else 1
            team = abs(math.log(m.n_agents / scenario.n_agents)) if m.n_agents > 0 else math.inf
            ranked.append(((abs(m.n_consumers - scenario.n_consumers), family, team, m.name), m.path))
    if ranked:
        return min(ranked)[1]
    found = "; ".join(why) if why else "none"
    other_m = not any_consumers and any(m.is_lgtc and m.kinds == kinds and m.meta.get("consumer_count_agnostic")
                                        for m in models)
    hint = " (or allow another M: any_consumers:=true / --any-consumers)" if other_m else ""
    raise NoShippedModel(
        f"no shipped model fits scenario '{scenario.name}' (M={scenario.n_consumers}, r={len(kinds)} kinds "
        f"{_short(kinds)}) in {folder}: {found}. Pass a model explicitly: model:=PATH.pt (ROS) or "
        f"--policy PATH.pt (lgtc){hint}")


def _training_args(meta: dict | None) -> dict:
    args = (meta or {}).get("training", {}).get("args", {})
    return args if isinstance(args, dict) else {}


def _short(kinds) -> str:
    """['instantaneous', 'persistent'] -> [inst, pers] (keeps the one-line message short)."""
    return "[" + ", ".join(k[:4] for k in kinds) + "]"
