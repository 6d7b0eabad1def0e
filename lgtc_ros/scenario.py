"""Scenarios: frozen dataclasses loaded from YAML, validated strictly.

Every quantity is in normalized arena units (the arena is [-1, 1]^2) and seconds unless its
name says otherwise (`arena_size_m`, `altitude_m` are metres). A bad file raises one
`ScenarioError` naming the file, the field and the value; nothing is half-loaded.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

KINDS = ("instantaneous", "persistent")
EVENT_KINDS = ("discharge", "dropout", "demand_change", "consumer_move")


class ScenarioError(ValueError):
    """A scenario file or dict is invalid. The message names the file, the field and the value."""


@dataclass(frozen=True)
class ResourceType:
    """One resource type `l` with its depletion kind `kappa_l`."""

    name: str
    kind: Literal["instantaneous", "persistent"]
    discharge_rate: float = 0.0
    """Persistent only: supply units lost per second by an active agent carrying it (a battery)."""


@dataclass(frozen=True)
class Randomization:
    """How `reset()` draws a fresh episode (the paper randomizes types, quantities, positions)."""

    agent_half_width: float = 0.9
    """Agents start on a jittered grid inside [-w, w]^2."""
    consumer_half_width: float = 0.8
    """Consumers are placed uniformly in [-w, w]^2."""
    demand_types_per_consumer: int = 2
    demand_range: tuple[float, float] = (0.5, 1.0)
    supply_types_per_agent: int = 1
    supply_range: tuple[float, float] = (0.2, 0.4)
    demand_types: tuple[int, ...] | None = None
    """Resource types consumers may demand (indices); None = all."""
    supply_types: tuple[int, ...] | None = None
    """Resource types agents may carry (indices); None = all."""
    cap_supply: bool = False
    """Scale each draw's supplies down so total supply <= total demand (the paper's assumption,
    enforced per episode instead of by the worst case of the ranges)."""
    discharge_probability: float = 0.0
    """Per episode: probability that one random agent discharges (all supply lost) and lands."""
    discharge_window_s: tuple[float, float] = (0.0, 0.0)
    """When that random discharge happens, uniform in this window (s after reset)."""


@dataclass(frozen=True)
class Initial:
    """Fixed initial values; each given field overrides the random draw of the same quantity."""

    agent_pos: tuple[tuple[float, float], ...] | None = None
    supply: tuple[tuple[float, ...], ...] | None = None
    consumer_pos: tuple[tuple[float, float], ...] | None = None
    demand: tuple[tuple[float, ...], ...] | None = None


@dataclass(frozen=True)
class RewardGains:
    """Gains of the hybrid reward, eq. (2). Each term is also logged separately."""

    demand_reduction: float = 1.0
    """rw_g: team reward per unit of total demand reduced this step."""
    instantaneous_release: float = 1.0
    """rw_im: per unit of instantaneous resource the agent released."""
    subteam_completion: float = 0.5
    """rw_rc: to every agent that released to a consumer when its instantaneous demand is met."""
    persistent_cover: float = 0.02
    """rw_is: per step while the agent covers a persistent demand."""
    all_covered: float = 0.02
    """rw_s: per step to all agents while every demanding consumer has an agent releasing."""
    collision: float = 10.0
    """gamma_ij: penalty -gain * (d_c^2 - d^2) for each neighbour closer than d_c."""
    collision_distance: float = 0.1
    """d_c (the paper's threshold epsilon, as a distance)."""
    assignment_progress: float = 1.0
    """rw_id outside R_{a_i}: gain * (|p(t-1) - d_a|^2 - |p(t) - d_a|^2)."""
    assignment_inside: float = 0.01
    """rw_id inside R_{a_i}: gamma_id per step."""


@dataclass(frozen=True)
class AssignmentConfig:
    """Weights and limits of the MIQP assignment of eq. (3)."""

    w_mismatch: float = 1.0
    w_proximity: float = 1.0
    demand_floor: float = 0.1
    """1/de is computed as 1/max(de, demand_floor) so a zero demand costs a lot but stays finite."""
    time_limit_s: float = 1.0
    gap_limit: float = 0.01


@dataclass(frozen=True)
class Event:
    """A scheduled change of the world at `time_s` seconds after reset."""

    time_s: float
    kind: Literal["discharge", "dropout", "demand_change", "consumer_move"]
    agent: int | None = None
    """discharge/dropout: the agent index (0-based); or give `select`."""
    select: Literal["lone"] | None = None
    """discharge/dropout instead of `agent`: "lone" = the flying agent that is alone inside a
    consumer's radius when the event fires (the lowest index if several; no effect if none).
    Which drone serves a consumer alone depends on the policy flying, so a mission like Fig. 5
    ("the drone alone at its consumer discharges") is written once for every policy."""
    consumer: int | None = None
    """demand_change/consumer_move: the consumer index (0-based)."""
    resource: int | None = None
    """discharge/demand_change: the resource type index; None means all types."""
    value: float = 0.0
    """discharge: supply left; demand_change: the new demand."""
    land: bool = False
    """discharge: the agent lands (becomes inactive) after discharging."""
    position: tuple[float, float] | None = None
    """consumer_move: the new consumer position."""


@dataclass(frozen=True)
class Scenario:
    """A complete mission: team, consumers, resources, dynamics limits, reward gains, events."""

    name: str
    n_agents: int
    n_consumers: int
    resources: tuple[ResourceType, ...]
    episode_steps: int = 200
    dt: float = 0.05
    """Seconds per control step (20 Hz)."""
    v_max: float = 0.5
    """Speed bound, arena units per second."""
    comm_radius: float = 1.0
    """C: agents closer than this exchange messages."""
    consumer_radius: float = 0.15
    """R_m: an agent inside releases to / covers the consumer."""
    consumer_radius_demand_scale: float = 0.0
    """R_m = consumer_radius * (1 + scale * total current demand of m) (Fig. 2); 0 disables."""
    safety_radius: float = 0.1
    """Two agents closer than this count as a collision (and bound the CBF)."""
    arena_size_m: float = 4.0
    """Side of the square arena in metres (hardware mapping of [-1, 1])."""
    altitude_m: float = 1.0
    random: Randomization = field(default_factory=Randomization)
    initial: Initial = field(default_factory=Initial)
    rewards: RewardGains = field(default_factory=RewardGains)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)
    events: tuple[Event, ...] = ()
    description: str = ""
    source: str = "<dict>"
    """Where it was loaded from (set by the loader, not by the YAML)."""

    @property
    def n_resources(self) -> int:
        return len(self.resources)

    @property
    def persistent_mask(self) -> tuple[bool, ...]:
        return tuple(res.kind == "persistent" for res in self.resources)

    @property
    def duration_s(self) -> float:
        return self.episode_steps * self.dt

    def event_step(self, event: Event) -> int:
        """The control step at whose start `event` fires."""
        return int(round(event.time_s / self.dt))


# ----------------------------------------------------------------------------- loading


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario YAML file. Raises `ScenarioError` naming file, field, value."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file (known: {', '.join(bundled_scenarios())})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not a text (UTF-8) file: {exc.reason} at byte {exc.start}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # PyYAML's scanner: an escape such as "\U10010000" beyond Unicode
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return scenario_from_dict(raw, source=str(path))


def scenario_from_dict(raw: Any, source: str = "<dict>") -> Scenario:
    """Build a validated `Scenario` from plain data (as parsed from YAML)."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    if "source" in raw:
        raise ScenarioError(f"{source}: unknown key 'source' (it is set by the loader)")
    scenario = _build(Scenario, {**raw, "source": source}, source, "")
    _validate(scenario)
    return scenario


def config_dir() -> Path:
    """The package's `config/` folder: the source tree, else the installed share/lgtc_ros/config."""
    here = Path(__file__).resolve().parent.parent / "config"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("lgtc_ros")) / "config"
    except Exception:  # noqa: BLE001 - ament is optional; fall back to the pip data location
        import sys

        return Path(sys.prefix) / "share" / "lgtc_ros" / "config"


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped in config/scenarios."""
    return sorted(p.stem for p in (config_dir() / "scenarios").glob("*.yaml"))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A file path as given, or a bundled scenario by name (`paper_10x4`)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return config_dir() / "scenarios" / f"{name_or_path}.yaml"


# ----------------------------------------------------------------------------- strict builder


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    """Recursively build dataclass `cls` from `data`, rejecting unknown keys and wrong types."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: field '{where}' = {data!r}: must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)  # YAML keys may be ints and strings at once
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (allowed in {where}: {', '.join(fields)})"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ScenarioError(f"{source}: missing required field '{prefix}{name}'")
    return cls(**kwargs)


def _short(value: Any) -> str:
    """`value` for an error message, cut to a line (a fuzzed file may hold a 400-digit number)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _coerce(hint: Any, value: Any, source: str, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, source, name)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, f"{name}.")
    if origin is Literal:
        if value not in args:
            raise ScenarioError(f"{source}: field '{name}' = {value!r}: must be one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ScenarioError(f"{source}: field '{name}' = {value!r}: must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{name}[{k}]") for k, v in enumerate(value))
        if len(value) != len(args):
            raise ScenarioError(f"{source}: field '{name}' = {value!r}: must have {len(args)} entries")
        return tuple(_coerce(a, v, source, f"{name}[{k}]") for k, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{source}: field '{name}' = {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31:
            raise ScenarioError(f"{source}: field '{name}' = {_short(value)}: must be an integer (32 bits)")
        return value
    if hint is float:
        try:  # a YAML integer of 400 digits is finite but overflows a float
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))
        except OverflowError:
            ok = False
        if not ok:
            raise ScenarioError(f"{source}: field '{name}' = {_short(value)}: must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{source}: field '{name}' = {value!r}: must be a string")
        return value
    raise TypeError(f"unsupported scenario field type {hint!r} for '{name}'")  # a bug here, not in the file


# ----------------------------------------------------------------------------- validation


def validate(s: Scenario) -> None:
    """Check a scenario built in code (e.g. with `dataclasses.replace`) by the loader's rules."""
    _validate(s)


def _validate(s: Scenario) -> None:
    def fail(name: str, value: Any, why: str) -> None:
        raise ScenarioError(f"{s.source}: field '{name}' = {value!r}: {why}")

    for name in ("n_agents", "n_consumers", "episode_steps"):
        if getattr(s, name) < 1:
            fail(name, getattr(s, name), "must be >= 1")
    if s.n_agents < s.n_consumers:
        fail("n_agents", s.n_agents, f"must be >= n_consumers ({s.n_consumers}): eq. (3) covers every consumer")
    if not s.resources:
        fail("resources", [], "must list at least one resource type")
    positive = ("dt", "v_max", "comm_radius", "consumer_radius", "safety_radius", "arena_size_m")
    for name in positive:
        if getattr(s, name) <= 0:
            fail(name, getattr(s, name), "must be > 0")
    for name in ("consumer_radius_demand_scale", "altitude_m"):
        if getattr(s, name) < 0:
            fail(name, getattr(s, name), "must be >= 0")
    for k, res in enumerate(s.resources):
        if res.discharge_rate < 0:
            fail(f"resources[{k}].discharge_rate", res.discharge_rate, "must be >= 0")
        if res.discharge_rate > 0 and res.kind != "persistent":
            fail(f"resources[{k}].discharge_rate", res.discharge_rate, "only persistent resources discharge")
    for f in dataclasses.fields(RewardGains):
        if getattr(s.rewards, f.name) < 0:
            fail(f"rewards.{f.name}", getattr(s.rewards, f.name), "must be >= 0 (signs are fixed by eq. 2)")
    a = s.assignment
    for name in ("w_mismatch", "w_proximity", "demand_floor", "time_limit_s", "gap_limit"):
        if getattr(a, name) < 0 or (name in ("demand_floor", "time_limit_s") and getattr(a, name) == 0):
            fail(f"assignment.{name}", getattr(a, name), "must be > 0" if name in ("demand_floor", "time_limit_s") else "must be >= 0")
    _validate_random(s, fail)
    _validate_initial(s, fail)
    _validate_supply_vs_demand(s, fail)
    _validate_events(s, fail)


def _validate_random(s: Scenario, fail) -> None:
    r = s.random
    for name in ("agent_half_width", "consumer_half_width"):
        if not 0 < getattr(r, name) <= 1:
            fail(f"random.{name}", getattr(r, name), "must be in (0, 1]")
    # the draws of quantities replaced by fixed `initial` values are never used, so not checked
    drawn = {"demand": s.initial.demand is None, "supply": s.initial.supply is None}
    for name, what in (("demand_types", "demand"), ("supply_types", "supply")):
        allowed = getattr(r, name)
        if allowed is not None and (not allowed or len(set(allowed)) != len(allowed)
                                    or any(not 0 <= k < s.n_resources for k in allowed)):
            fail(f"random.{name}", list(allowed), f"must list distinct type indices in 0..{s.n_resources - 1}")
    for name, what in (("demand_types_per_consumer", "demand"), ("supply_types_per_agent", "supply")):
        allowed = getattr(r, f"{what}_types")
        hi = s.n_resources if allowed is None else len(allowed)
        if drawn[what] and not 1 <= getattr(r, name) <= hi:
            fail(f"random.{name}", getattr(r, name), f"must be in 1..{hi} (resource types it may draw from)")
    if not 0.0 <= r.discharge_probability <= 1.0:
        fail("random.discharge_probability", r.discharge_probability, "must be a probability in [0, 1]")
    lo, hi = r.discharge_window_s
    if r.discharge_probability > 0 and not 0 <= lo <= hi <= s.duration_s:
        fail("random.discharge_window_s", [lo, hi], f"must satisfy 0 <= start <= end <= {s.duration_s:g} s")
    for name, what in (("demand_range", "demand"), ("supply_range", "supply")):
        if not drawn[what]:
            continue
        lo, hi = getattr(r, name)
        if not 0 <= lo <= hi:
            fail(f"random.{name}", list(getattr(r, name)), "must satisfy 0 <= low <= high")


def _validate_initial(s: Scenario, fail) -> None:
    shapes = {
        "agent_pos": (s.n_agents, 2),
        "supply": (s.n_agents, s.n_resources),
        "consumer_pos": (s.n_consumers, 2),
        "demand": (s.n_consumers, s.n_resources),
    }
    for name, (rows, cols) in shapes.items():
        value = getattr(s.initial, name)
        if value is None:
            continue
        if len(value) != rows or any(len(row) != cols for row in value):
            fail(f"initial.{name}", [list(v) for v in value], f"must be {rows} rows of {cols} numbers")
        flat = [x for row in value for x in row]
        if name.endswith("pos") and any(abs(x) > 1 for x in flat):
            fail(f"initial.{name}", [list(v) for v in value], "positions must lie in the arena [-1, 1]^2")
        if not name.endswith("pos") and any(x < 0 for x in flat):
            fail(f"initial.{name}", [list(v) for v in value], "quantities must be >= 0")


def _validate_supply_vs_demand(s: Scenario, fail) -> None:
    """The paper assumes total supply <= total demand; checked for the worst draw (unless random
    supplies are capped per draw, which enforces it for every episode)."""
    r = s.random
    if r.cap_supply and s.initial.supply is None:
        return
    if s.initial.supply is not None:
        max_supply, supply_field = sum(map(sum, s.initial.supply)), "initial.supply"
    else:
        max_supply = s.n_agents * r.supply_types_per_agent * r.supply_range[1]
        supply_field = "random.supply_range"
    if s.initial.demand is not None:
        min_demand = sum(map(sum, s.initial.demand))
    else:
        min_demand = s.n_consumers * r.demand_types_per_consumer * r.demand_range[0]
    if max_supply > min_demand + 1e-9:
        value = getattr(s.initial, "supply") if supply_field == "initial.supply" else r.supply_range
        fail(
            supply_field,
            [list(v) for v in value] if supply_field == "initial.supply" else list(value),
            f"supply totals above demand totals: total supply up to {max_supply:g} > "
            f"total demand as low as {min_demand:g} (the paper assumes supply <= demand)",
        )


def _validate_events(s: Scenario, fail) -> None:
    for k, e in enumerate(s.events):
        where = f"events[{k}]"
        if not 0 <= e.time_s <= s.duration_s:
            fail(f"{where}.time_s", e.time_s, f"must be within the episode [0, {s.duration_s:g}] s")
        needs_agent = e.kind in ("discharge", "dropout")
        needs_consumer = e.kind in ("demand_change", "consumer_move")
        if needs_agent and (e.agent is None) == (e.select is None):
            fail(f"{where}.agent", e.agent, f"a '{e.kind}' event needs an agent or a select, not both "
                 f"(select = {e.select!r})")
        if e.select is not None and not needs_agent:
            fail(f"{where}.select", e.select, f"only discharge and dropout events select an agent, not '{e.kind}'")
        if e.agent is not None and not 0 <= e.agent < s.n_agents:
            fail(f"{where}.agent", e.agent, f"no such agent: the scenario has {s.n_agents} (0..{s.n_agents - 1})")
        if needs_consumer and e.consumer is None:
            fail(f"{where}.consumer", None, f"a '{e.kind}' event needs a consumer")
        if e.consumer is not None and not 0 <= e.consumer < s.n_consumers:
            fail(f"{where}.consumer", e.consumer, f"no such consumer: the scenario has {s.n_consumers} (0..{s.n_consumers - 1})")
        if e.resource is not None and not 0 <= e.resource < s.n_resources:
            fail(f"{where}.resource", e.resource, f"no such resource type: the scenario has {s.n_resources}")
        if e.value < 0:
            fail(f"{where}.value", e.value, "must be >= 0")
        if e.kind == "consumer_move" and e.position is None:
            fail(f"{where}.position", None, "a 'consumer_move' event needs a position")
        if e.position is not None and any(abs(x) > 1 for x in e.position):
            fail(f"{where}.position", list(e.position), "must lie in the arena [-1, 1]^2")
