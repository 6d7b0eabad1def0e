"""Which nodes a launch starts, with which names, namespaces and parameters, and which launch
arguments it takes: decided here, without ROS, so it is tested.

The launch files in `launch/` only turn these into `launch` / `launch_ros` actions (`to_actions`,
`declare_arguments`); `lgtc_ros.graph_processes` starts the same specs as OS processes with the
command line `launch_ros.actions.Node` builds (`NodeSpec.ros_arguments`), so a test of the graph
tests what a launch runs.

- `sim_graph`: the embedded simulation (world_node in "sim" mode, radio, CBF, one agent process per
  drone in the drone's namespace, or one swarm_node for every drone);
- `crazyswarm_graph`: real or Crazyswarm2-simulated drones (world_node in "hardware" mode keeps the
  virtual resources, radio, CBF, agents, and the bridge to Crazyswarm2 or straight to cflib);
- `record_command`: `ros2 bag record` of every topic `lgtc replay` reads (names from `bags.topics`);
- `rviz:=true` (both launch files): the world publishes `lgtc/markers` and `rviz_node` starts RViz
  with `config/lgtc.rviz`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lgtc_ros.bags import topics
from lgtc_ros.comm import default_names
from lgtc_ros.scenario import config_dir, load_scenario, resolve_scenario

PACKAGE = "lgtc_ros"


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    parameters: dict = field(default_factory=dict)
    namespace: str = ""
    """"" for swarm-wide nodes (the launch's namespace), the drone's name for per-drone nodes."""
    package: str = PACKAGE
    arguments: tuple[str, ...] = ()
    """Command-line arguments before the ROS ones (launch_ros `Node(arguments=...)`)."""

    @property
    def full_name(self) -> str:
        return "/" + "/".join(p for p in (self.namespace, self.name) if p)

    def parameter_file(self) -> dict:
        """The parameter file content launch_ros writes for `parameters=[dict]` (keyed by the
        node's full name)."""
        return {self.full_name: {"ros__parameters": dict(self.parameters)}}

    def ros_arguments(self, parameter_file: str) -> list[str]:
        """The arguments launch_ros passes the executable: node name, namespace, parameter file."""
        args = [*self.arguments, "--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace}"]
        return args + ["--params-file", parameter_file]


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


_COMMON_ARGS = (
    LaunchArg("model", "", "exported policy (.pt beside its .json); empty: the shipped model that fits the scenario"),
    LaunchArg("cbf", "decentralized", "safety filter: one QP per drone or one for the swarm",
              ("decentralized", "centralized")),
    LaunchArg("seed", "0", "the mission's random seed (start state, events, radio losses)"),
    LaunchArg("any_consumers", "false", "fly a model trained for another consumer count", ("true", "false")),
    LaunchArg("record", "", "a new folder: rosbag2 (MCAP) of every topic `lgtc replay` reads; empty: no recording"),
    LaunchArg("rviz", "false", "start RViz (config/lgtc.rviz) and have the world publish lgtc/markers",
              ("true", "false")),
)

SIM_ARGS = (
    LaunchArg("scenario", "paper_10x4", "bundled scenario name (config/scenarios) or path to a scenario YAML"),
    *_COMMON_ARGS,
    LaunchArg("agents", "process", "one agent_node process per drone, or one swarm_node for all drones "
              "(large swarms: a process costs ~280 MB)", ("process", "swarm")),
    LaunchArg("latency_ticks", "0", "radio: extra ticks of delay beyond one"),
    LaunchArg("drop_prob", "0.0", "radio: independent loss probability per message and receiver"),
)

CRAZYSWARM_ARGS = (
    LaunchArg("scenario", "discharge_5x3", "bundled scenario name (config/scenarios) or path to a scenario YAML"),
    *_COMMON_ARGS,
    LaunchArg("link", "crazyswarm2", "who talks to the radios: Crazyswarm2's server, or this package's cflib link",
              ("crazyswarm2", "cflib")),
    LaunchArg("uris", "", "link cflib: comma-separated radio URIs, one per drone in order"),
    LaunchArg("backend", "sim", "Crazyswarm2 server backend (link crazyswarm2)", ("sim", "cpp", "cflib")),
    LaunchArg("crazyflies_yaml", "", "Crazyswarm2 robot file; empty: this package's config/crazyflies.yaml"),
    LaunchArg("mocap", "False", "Crazyswarm2: start its motion-capture node", ("True", "False")),
    LaunchArg("autostart", "false", "take off as soon as the drones' services are up (else call lgtc/start)",
              ("true", "false")),
)


def _common(scenario: str, names: list[str]) -> dict:
    return {"scenario": scenario, "names": names}


def _mission(scenario: str) -> tuple[str, list[str]]:
    """The scenario as a file path (every node loads the same file) and the drone names."""
    path = resolve_scenario(scenario)
    s = load_scenario(path)  # fail here, at launch, with the loader's message, not in N nodes
    return str(path), list(default_names(s.n_agents))


def _choose(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} = {value!r}: must be one of {', '.join(choices)}")
    return value


def _swarm(scenario: str, names: list[str], model: str, cbf: str, latency_ticks: int, drop_prob: float,
           seed: int, any_consumers: bool, agents: str) -> list[NodeSpec]:
    _choose("cbf", cbf, ("decentralized", "centralized"))
    _choose("agents", agents, ("process", "swarm"))
    common = _common(scenario, names)
    policy = {"model": model, "any_consumers": bool(any_consumers)}
    specs = [NodeSpec("radio_node", "lgtc_radio", {**common, "latency_ticks": int(latency_ticks),
                                                    "drop_prob": float(drop_prob), "seed": int(seed)}),
             NodeSpec("cbf_node", "lgtc_cbf", {**common, "form": cbf})]
    if agents == "swarm":
        return specs + [NodeSpec("swarm_node", "lgtc_swarm", {**common, **policy})]
    return specs + [NodeSpec("agent_node", "lgtc_agent", {**common, **policy}, namespace=name) for name in names]


def rviz_node() -> NodeSpec:
    """RViz with this package's view of a mission (the world's `lgtc/markers` in frame `world`)."""
    return NodeSpec("rviz2", "rviz2", package="rviz2", arguments=("-d", str(config_dir() / "lgtc.rviz")))


def _world(path: str, names: list[str], mode: str, seed: int, rviz: bool) -> NodeSpec:
    # markers only for RViz: they cost the world N more subscriptions (lgtc_ros/nodes/world_node.py)
    return NodeSpec("world_node", "lgtc_world", {**_common(path, names), "mode": mode, "seed": int(seed),
                                                 "markers": bool(rviz)})


def sim_graph(scenario: str = "paper_10x4", model: str = "", cbf: str = "decentralized", latency_ticks: int = 0,
              drop_prob: float = 0.0, seed: int = 0, any_consumers: bool = False,
              agents: str = "process", rviz: bool = False) -> list[NodeSpec]:
    path, names = _mission(scenario)
    world = _world(path, names, "sim", seed, rviz)
    return [world, *_swarm(path, names, model, cbf, latency_ticks, drop_prob, seed, any_consumers, agents),
            *([rviz_node()] if rviz else [])]


def crazyswarm_graph(scenario: str = "discharge_5x3", model: str = "", cbf: str = "decentralized",
                     link: str = "crazyswarm2", uris: list[str] | None = None, seed: int = 0,
                     pose_from_tf: bool = False, autostart: bool = False,
                     any_consumers: bool = False, rviz: bool = False) -> list[NodeSpec]:
    """`link`: "crazyswarm2" (its server runs the radios; backend sim|cpp|cflib chosen in its launch)
    or "cflib" (this package's own radio link, no Crazyswarm2). `pose_from_tf`: Crazyswarm2's
    simulator publishes TF but no /{name}/pose, so the bridge republishes TF as poses."""
    _choose("link", link, ("crazyswarm2", "cflib"))
    path, names = _mission(scenario)
    if link == "cflib" and len(uris or []) != len(names):
        raise ValueError(f"link cflib needs one uri per drone ({len(names)}), got {len(uris or [])}")
    common = _common(path, names)
    world = _world(path, names, "hardware", seed, rviz)
    bridge = NodeSpec("bridge_node", "lgtc_bridge", {**common, "backend": link, "uris": list(uris or [""]),
                                                     "pose_from_tf": pose_from_tf, "autostart": autostart})
    return [world, *_swarm(path, names, model, cbf, 0, 0.0, seed, any_consumers, "process"), bridge,
            *([rviz_node()] if rviz else [])]


def record_command(bag: str, names: list[str]) -> list[str]:
    """`ros2 bag record` (MCAP) of every topic the replay reads, into folder `bag`."""
    return ["ros2", "bag", "record", "--storage", "mcap", "--output", bag, *topics(names)]


def declare_arguments(args: tuple[LaunchArg, ...]) -> list:
    """`DeclareLaunchArgument`s with descriptions and choices (shown by `ros2 launch -s`)."""
    from launch.actions import DeclareLaunchArgument

    return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                  **({"choices": list(a.choices)} if a.choices else {})) for a in args]


def to_actions(specs: list[NodeSpec], record: str = "", extra_parameters: dict | None = None) -> list:
    """`launch_ros` Nodes for `specs` (+ the `ros2 bag record` process when `record` names a folder).
    The one place that imports launch_ros: the launch files call it from their OpaqueFunction."""
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    actions = [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace or None,
                    output="screen", parameters=[{**s.parameters, **(extra_parameters or {})}],
                    arguments=list(s.arguments) or None) for s in specs]
    if record:
        actions.append(ExecuteProcess(cmd=record_command(record, specs[0].parameters["names"]), output="screen"))
    return actions
