"""The ROS 2 graph as `ros2 launch lgtc_ros sim.launch.py` runs it: every node of
`launch_plan.sim_graph` its own OS process, started from its console script with the arguments
launch_ros passes (`lgtc_ros.graph_processes`), on real rclpy, on a ROS_DOMAIN_ID of its own. A
probe node checks the mission from outside; Ctrl-C (SIGINT to the process group) must stop every
node silently. Timings are the mission's own (20 Hz), never tight wall-clock budgets: the graph
starts whenever its agents are ready, on a busy machine too.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from lgtc_ros.graph_processes import executable, ros_environment, start
from lgtc_ros.launch_plan import sim_graph
from lgtc_ros.nodes.probe import GraphProbe
from lgtc_ros.scenario import load_scenario, resolve_scenario

START_TIMEOUT_S = 240.0  # torch + model in every agent process, on 2 shared cores
_domains = itertools.count()


def domain_id() -> int:
    """A ROS_DOMAIN_ID no other test (of this run or a concurrent one) uses."""
    return 1 + (os.getpid() * 13 + next(_domains)) % 100


def fly(tmp_path: Path, scenario: str, seconds: float, agents: str = "process", sig: int = signal.SIGINT):
    """Start the graph, wait for the mission, watch it `seconds`, stop it with `sig`:
    (probe report, {node: exit code}, {node: log})."""
    s = load_scenario(resolve_scenario(scenario))
    specs = sim_graph(scenario, agents=agents)
    domain = domain_id()
    graph = start(specs, tmp_path, domain)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        half = s.arena_size_m / 2
        probe = GraphProbe([f"cf{i + 1}" for i in range(s.n_agents)], s.safety_radius * half, s.altitude_m,
                           context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not probe.started and time.monotonic() < deadline and not graph.exited():
            executor.spin_once(timeout_sec=0.1)
        assert probe.started, f"no mission start; exited: {graph.exited()}"
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        report = probe.report()
        executor.shutdown()
        probe.destroy_node()
    finally:
        codes = graph.stop(sig, timeout_s=5.0)
        rclpy.try_shutdown(context=context)
    return report, codes, {spec.full_name: graph.log(spec) for spec in specs}


def check_mission(report, codes, logs, names):
    assert set(report.command_hz) == set(names)
    for name, hz in report.command_hz.items():
        assert 18.0 <= hz <= 22.0, f"{name}: safe commands at {hz:.1f} Hz"
    assert 18.0 <= report.pose_hz <= 22.0, report.pose_hz
    assert report.ticks_too_close == 0, f"closest pair {report.closest_m:.3f} m"
    assert report.demand_end < report.demand_start                       # the swarm delivers
    bad = {node: code for node, code in codes.items() if code != 0}   # every node exits 0 within 5 s
    assert not bad, {node: (code, logs[node][-1500:]) for node, code in bad.items()}
    for node, log in logs.items():
        assert "Traceback" not in log and "RCLError" not in log, f"{node}:\n{log[-3000:]}"


# seconds watched: long enough for the first deliveries (discharge_5x3 flies at half the speed)
@pytest.mark.parametrize("scenario, seconds", [("discharge_5x3", 9.0), ("paper_10x4", 6.0)])
def test_the_graph_as_launched_flies_safely_at_20_hz_and_stops_on_ctrl_c(tmp_path, scenario, seconds):
    report, codes, logs = fly(tmp_path, scenario, seconds)
    n = load_scenario(resolve_scenario(scenario)).n_agents
    check_mission(report, codes, logs, [f"cf{i + 1}" for i in range(n)])
    assert len(codes) == n + 3                                           # world, radio, CBF, an agent each


def test_swarm_node_flies_every_drone_in_one_process_and_stops_on_sigterm(tmp_path):
    report, codes, logs = fly(tmp_path, "discharge_5x3", seconds=9.0, agents="swarm", sig=signal.SIGTERM)
    check_mission(report, codes, logs, [f"cf{i + 1}" for i in range(5)])
    assert set(codes) == {"/lgtc_world", "/lgtc_radio", "/lgtc_cbf", "/lgtc_swarm"}


@pytest.mark.parametrize("node, args, words", [
    ("agent_node", ["-r", "__ns:=/cf1", "-p", "scenario:=discharge_5x3", "-p", "model:=/no/such/model.pt"],
     "parameter 'model' = '/no/such/model.pt'"),
    ("agent_node", ["-r", "__ns:=/cf1", "-p", "scenario:=discharge_5x3", "-p", "model:=models/lgtc_paper_10x4.pt"],
     "parameter 'model'"),                                                # 4 consumers against 3
    ("agent_node", ["-r", "__ns:=/cf9", "-p", "scenario:=discharge_5x3"], "parameter 'names'"),
    ("world_node", ["-p", "scenario:=no_such_mission"], "parameter 'scenario' = 'no_such_mission'"),
    ("world_node", ["-p", "scenario:=discharge_5x3", "-p", "mode:=replay"], "parameter 'mode' = 'replay'"),
    ("world_node", ["-p", "scenario:=discharge_5x3", "-p", "seed:=abc"], "seed"),             # wrong type
    ("radio_node", ["-p", "scenario:=discharge_5x3", "-p", "drop_prob:=1.5"], "drop_prob"),   # out of range
    ("cbf_node", ["-p", "scenario:=discharge_5x3", "-p", "form:=lazy"], "parameter 'form' = 'lazy'"),
])
def test_a_node_that_cannot_start_says_which_parameter_in_one_line_and_exits_non_zero(node, args, words):
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([executable(node), "--ros-args", *args], capture_output=True, text=True, cwd=root,
                          env=ros_environment(domain_id()), timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert words in out and "Traceback" not in out, out
    assert len([line for line in out.splitlines() if "cannot start" in line]) == 1, out
