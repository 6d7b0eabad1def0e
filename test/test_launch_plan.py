"""What the launch files start (decided in lgtc_ros.launch_plan, checked here without ROS), and that
the package declares everything colcon and `ros2 run` need to find it."""
from __future__ import annotations

import ast
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lgtc_ros.bags import topics
from lgtc_ros.launch_plan import CRAZYSWARM_ARGS, SIM_ARGS, NodeSpec, crazyswarm_graph, record_command, sim_graph

ROOT = Path(__file__).resolve().parent.parent
NODES = {"agent_node", "swarm_node", "radio_node", "cbf_node", "world_node", "bridge_node"}


def test_sim_graph_one_agent_per_drone_and_shared_mission():
    specs = sim_graph("paper_10x4", cbf="centralized", latency_ticks=2, drop_prob=0.1, seed=4)
    kinds = [s.executable for s in specs]
    assert kinds.count("agent_node") == 10 and kinds.count("world_node") == 1
    assert {"radio_node", "cbf_node"} <= set(kinds) and "bridge_node" not in kinds
    assert len({s.full_name for s in specs}) == len(specs)               # unique node names
    assert {s.parameters["scenario"] for s in specs} == {str(ROOT / "config/scenarios/paper_10x4.yaml")}
    agents = [s for s in specs if s.executable == "agent_node"]
    assert [a.full_name for a in agents] == [f"/cf{i + 1}/lgtc_agent" for i in range(10)]  # drone namespaces
    swarm = sim_graph("paper_10x4", agents="swarm")
    assert [s.executable for s in swarm].count("swarm_node") == 1 and "agent_node" not in {s.executable for s in swarm}
    radio = next(s for s in specs if s.executable == "radio_node")
    assert (radio.parameters["latency_ticks"], radio.parameters["drop_prob"]) == (2, 0.1)
    assert next(s for s in specs if s.executable == "world_node").parameters["mode"] == "sim"


def test_crazyswarm_graph_runs_virtual_resources_and_a_bridge():
    specs = crazyswarm_graph("discharge_5x3", link="crazyswarm2", pose_from_tf=True)
    world = next(s for s in specs if s.executable == "world_node")
    bridge = next(s for s in specs if s.executable == "bridge_node")
    assert world.parameters["mode"] == "hardware" and bridge.parameters["backend"] == "crazyswarm2"
    assert bridge.parameters["pose_from_tf"] and len([s for s in specs if s.executable == "agent_node"]) == 5
    uris = [f"radio://0/80/2M/E7E7E7E70{i}" for i in range(1, 6)]
    cflib = crazyswarm_graph("discharge_5x3", link="cflib", uris=uris)
    assert next(s for s in cflib if s.executable == "bridge_node").parameters["uris"] == uris


@pytest.mark.parametrize("call, words", [
    (lambda: sim_graph(cbf="off"), "cbf = 'off': must be one of decentralized, centralized"),
    (lambda: sim_graph(agents="threads"), "agents = 'threads': must be one of process, swarm"),
    (lambda: sim_graph("no_such_mission"), "no such scenario"),
    (lambda: crazyswarm_graph(link="wifi"), "must be one of crazyswarm2, cflib"),
    (lambda: crazyswarm_graph(link="cflib", uris=["radio://0/80/2M/E7E7E7E701"]), "one uri per drone"),
])
def test_bad_launch_arguments_fail_at_launch_with_a_clear_message(call, words):
    with pytest.raises(Exception, match=words):
        call()


def test_record_command_records_what_the_replay_reads():
    names = ["cf1", "cf2"]
    cmd = record_command("runs/bag", names)
    assert cmd[:3] == ["ros2", "bag", "record"] and cmd[cmd.index("--output") + 1] == "runs/bag"
    assert cmd[cmd.index("--storage") + 1] == "mcap"
    assert set(topics(names)) <= set(cmd) and "/cf2/lgtc/message" in cmd and "/lgtc/meta" in cmd


def test_every_node_is_a_console_script_and_every_launch_file_parses():
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r'"agent_node", "swarm_node", "radio_node", "cbf_node", "world_node", "bridge_node"', setup)
    for node in NODES:
        source = (ROOT / "lgtc_ros" / "nodes" / f"{node}.py").read_text()
        tree = ast.parse(source)
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), node
    for launch in ("sim", "crazyswarm", "replay"):
        tree = ast.parse((ROOT / "launch" / f"{launch}.launch.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_node_specs_pass_what_launch_ros_passes():
    """launch_ros's Node: `--ros-args -r __node:=NAME -r __ns:=/NS --params-file FILE`, the file keyed by
    the node's full name (launch_ros/actions/node.py, _create_params_file_from_dict)."""
    agent = next(s for s in sim_graph("discharge_5x3") if s.executable == "agent_node")
    assert agent.ros_arguments("p.yaml") == ["--ros-args", "-r", "__node:=lgtc_agent", "-r", "__ns:=/cf1",
                                             "--params-file", "p.yaml"]
    assert list(agent.parameter_file()) == ["/cf1/lgtc_agent"]
    assert set(agent.parameter_file()["/cf1/lgtc_agent"]["ros__parameters"]) >= {"scenario", "names", "model"}
    world = sim_graph("discharge_5x3")[0]
    assert world.ros_arguments("w.yaml") == ["--ros-args", "-r", "__node:=lgtc_world", "--params-file", "w.yaml"]


@pytest.mark.parametrize("args", [SIM_ARGS, CRAZYSWARM_ARGS])
def test_every_launch_argument_is_described_and_defaults_to_one_of_its_choices(args):
    assert len({a.name for a in args}) == len(args)
    for a in args:
        assert len(a.description) > 15, a.name
        assert not a.choices or a.default in a.choices, a.name
    for launch in ("sim", "crazyswarm"):  # the launch files take their arguments from the plan
        assert "declare_arguments(" in (ROOT / "launch" / f"{launch}.launch.py").read_text()


def test_package_xml_declares_what_the_nodes_import():
    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot() if e.tag == "exec_depend"}
    imported = set()
    for path in (ROOT / "lgtc_ros" / "nodes").glob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                imported.add(n.module.split(".")[0])
    ros = imported & {"rclpy", "geometry_msgs", "std_msgs", "std_srvs", "tf2_ros", "rcl_interfaces", "visualization_msgs"}
    assert ros <= deps, ros - deps
    assert "crazyflie_interfaces" in imported and "crazyflie_interfaces" not in deps  # optional, lazy


@pytest.mark.parametrize("args", [SIM_ARGS, CRAZYSWARM_ARGS])
def test_rviz_is_a_launch_argument_of_both_launch_files(args):
    (rviz,) = [a for a in args if a.name == "rviz"]
    assert (rviz.default, rviz.choices) == ("false", ("true", "false"))
    for launch in ("sim", "crazyswarm"):  # and both hand it to the plan
        assert 'rviz=a["rviz"] == "true"' in (ROOT / "launch" / f"{launch}.launch.py").read_text()


@pytest.mark.parametrize("graph", [lambda **k: sim_graph("discharge_5x3", **k),
                                   lambda **k: crazyswarm_graph("discharge_5x3", link="crazyswarm2", **k)])
def test_rviz_true_starts_rviz_on_the_package_view_and_turns_the_markers_on(graph):
    plain = graph()
    assert "rviz2" not in {s.executable for s in plain}
    assert next(s for s in plain if s.executable == "world_node").parameters["markers"] is False  # opt-in: N subs
    specs = graph(rviz=True)
    assert next(s for s in specs if s.executable == "world_node").parameters["markers"] is True
    (rviz,) = [s for s in specs if s.executable == "rviz2"]
    assert (rviz.package, rviz.name, rviz.namespace, rviz.parameters) == ("rviz2", "rviz2", "", {})
    flag, view = rviz.arguments
    assert flag == "-d" and Path(view) == ROOT / "config" / "lgtc.rviz" and Path(view).is_file()
    # launch_ros puts a Node's arguments before its ROS arguments
    assert rviz.ros_arguments("r.yaml")[:3] == ["-d", view, "--ros-args"]
    assert len({s.full_name for s in specs}) == len(specs)
    assert [s.executable for s in specs if s.executable != "rviz2"] == [s.executable for s in plain]


def test_the_rviz_view_shows_the_markers_in_the_world_frame():
    view = yaml.safe_load((ROOT / "config" / "lgtc.rviz").read_text())
    manager = view["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "world"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/lgtc/markers"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Reliability Policy"] == "Reliable"
    assert displays["rviz_default_plugins/Grid"]["Plane"] == "XY" and all(d["Enabled"] for d in displays.values())


def test_a_node_that_ignores_the_stop_is_aborted_and_its_log_shows_where_it_hung(tmp_path):
    import signal
    import subprocess
    import sys

    from lgtc_ros.graph_processes import RunningGraph, _log_path, ros_environment

    spec = NodeSpec("agent_node", "lgtc_agent", namespace="cf1")
    hung = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "def stuck_here():\n    print('ready', flush=True)\n    time.sleep(60)\nstuck_here()\n")
    with _log_path(tmp_path, spec).open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", hung], stdout=log, stderr=subprocess.STDOUT,
                                env=ros_environment(7), process_group=0)
    graph = RunningGraph([spec], [proc], tmp_path)
    deadline = time.monotonic() + 30
    while "ready" not in graph.log(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert graph.stop(signal.SIGINT, timeout_s=0.5) == {"/cf1/lgtc_agent": None}
    assert proc.returncode == -signal.SIGABRT
    assert "stuck_here" in graph.log(spec)


def test_the_known_teardown_hang_is_told_apart_from_other_hangs():
    """A node aborted at the stop deadline counts as the known Fast DDS teardown hang only when its
    stack (written by the fault handler; this one is from a stress run) runs from `run` into rclpy's
    teardown; stuck while spinning, or with no stack at all, it is a failure like any other."""
    from lgtc_ros.graph_processes import aborted_in_teardown, unclean_exits

    log = (Path(__file__).parent / "data" / "teardown_hang.log").read_text()
    assert aborted_in_teardown(log)
    spinning = log.replace("line 1965 in destroy_node", "line 300 in spin_once")
    assert not aborted_in_teardown(spinning)
    assert not aborted_in_teardown(log.replace("common.py\", line 189 in run", "agent_node.py\", line 30 in tick"))
    assert not aborted_in_teardown("[INFO] waiting for the first pose message\n")
    with pytest.warns(RuntimeWarning, match="teardown hang"):
        bad = unclean_exits({"/a": None, "/b": None, "/c": 0, "/d": 1}, {"/a": log, "/b": spinning})
    assert bad == {"/b": None, "/d": 1}
