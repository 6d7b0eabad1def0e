"""Which nodes a launch starts, with which parameters: decided here, without ROS, so it is tested.

The launch files in `launch/` only turn these `NodeSpec`s into `launch_ros.actions.Node`s:

- `sim_graph`: the embedded simulation (world_node in "sim" mode, radio, CBF, one agent per drone);
- `crazyswarm_graph`: real or Crazyswarm2-simulated drones (world_node in "hardware" mode keeps the
  virtual resources, radio, CBF, agents, and the bridge to Crazyswarm2 or straight to cflib);
- `record_command`: `ros2 bag record` of every topic `lgtc replay` reads (names from `bags.topics`);
- `to_actions`: the specs as launch actions (imports `launch_ros`, so only inside a launch).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lgtc_ros.bags import topics
from lgtc_ros.comm import default_names
from lgtc_ros.scenario import load_scenario, resolve_scenario

PACKAGE = "lgtc_ros"


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    parameters: dict = field(default_factory=dict)


def _common(scenario: str, names: list[str]) -> dict:
    return {"scenario": scenario, "names": names}


def _mission(scenario: str) -> tuple[str, list[str]]:
    """The scenario as a file path (every node loads the same file) and the drone names."""
    path = resolve_scenario(scenario)
    s = load_scenario(path)  # fail here, at launch, with the loader's message, not in N nodes
    return str(path), list(default_names(s.n_agents))


def _swarm(scenario: str, names: list[str], model: str, cbf: str, latency_ticks: int, drop_prob: float,
           seed: int, any_consumers: bool) -> list[NodeSpec]:
    common = _common(scenario, names)
    specs = [NodeSpec("radio_node", "lgtc_radio", {**common, "latency_ticks": int(latency_ticks),
                                                    "drop_prob": float(drop_prob), "seed": int(seed)}),
             NodeSpec("cbf_node", "lgtc_cbf", {**common, "form": cbf})]
    for i, name in enumerate(names):
        specs.append(NodeSpec("agent_node", f"lgtc_agent_{name}", {**common, "name": name, "index": i,
                                                                    "model": model, "any_consumers": any_consumers}))
    return specs


def sim_graph(scenario: str = "paper_10x4", model: str = "", cbf: str = "decentralized", latency_ticks: int = 0,
              drop_prob: float = 0.0, seed: int = 0, any_consumers: bool = False) -> list[NodeSpec]:
    if cbf not in ("decentralized", "centralized"):
        raise ValueError(f"cbf = {cbf!r}: decentralized or centralized (the graph always filters)")
    path, names = _mission(scenario)
    world = NodeSpec("world_node", "lgtc_world", {**_common(path, names), "mode": "sim", "seed": int(seed)})
    return [world, *_swarm(path, names, model, cbf, latency_ticks, drop_prob, seed, any_consumers)]


def crazyswarm_graph(scenario: str = "discharge_5x3", model: str = "", cbf: str = "decentralized",
                     link: str = "crazyswarm2", uris: list[str] | None = None, seed: int = 0,
                     pose_from_tf: bool = False, autostart: bool = False,
                     any_consumers: bool = False) -> list[NodeSpec]:
    """`link`: "crazyswarm2" (its server runs the radios; backend sim|cpp|cflib chosen in its launch)
    or "cflib" (this package's own radio link, no Crazyswarm2). `pose_from_tf`: Crazyswarm2's
    simulator publishes TF but no /{name}/pose, so the bridge republishes TF as poses."""
    if link not in ("crazyswarm2", "cflib"):
        raise ValueError(f"link = {link!r}: crazyswarm2 or cflib")
    path, names = _mission(scenario)
    if link == "cflib" and len(uris or []) != len(names):
        raise ValueError(f"link cflib needs one uri per drone ({len(names)}), got {len(uris or [])}")
    common = _common(path, names)
    world = NodeSpec("world_node", "lgtc_world", {**common, "mode": "hardware", "seed": int(seed)})
    bridge = NodeSpec("bridge_node", "lgtc_bridge", {**common, "backend": link, "uris": list(uris or [""]),
                                                     "pose_from_tf": pose_from_tf, "autostart": autostart})
    return [world, *_swarm(path, names, model, cbf, 0, 0.0, seed, any_consumers), bridge]


def record_command(bag: str, names: list[str]) -> list[str]:
    """`ros2 bag record` (MCAP) of every topic the replay reads, into folder `bag`."""
    return ["ros2", "bag", "record", "--storage", "mcap", "--output", bag, *topics(names)]


def to_actions(specs: list[NodeSpec], record: str = "", extra_parameters: dict | None = None) -> list:
    """`launch_ros` Nodes for `specs` (+ the `ros2 bag record` process when `record` names a folder).
    The one place that imports launch: the launch files call it from their OpaqueFunction."""
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    actions = [Node(package=PACKAGE, executable=s.executable, name=s.name, output="screen",
                    parameters=[{**s.parameters, **(extra_parameters or {})}]) for s in specs]
    if record:
        actions.append(ExecuteProcess(cmd=record_command(record, specs[0].parameters["names"]), output="screen"))
    return actions
