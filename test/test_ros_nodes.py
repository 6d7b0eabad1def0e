"""The rclpy nodes, in one process, on a real ROS 2 graph. Skipped where ROS 2 is not sourced
(every decision they take is tested without ROS in test_node_cores, test_flight, test_bridge)."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from lgtc_ros.nodes.agent_node import AgentNode  # noqa: E402
from lgtc_ros.nodes.cbf_node import CbfNode  # noqa: E402
from lgtc_ros.nodes.radio_node import RadioNode  # noqa: E402
from lgtc_ros.nodes.world_node import WorldNode  # noqa: E402

SCENARIO, MODEL = "discharge_5x3", "models/lgtc_discharge_5x3.pt"


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def params(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in {"scenario": SCENARIO, **values}.items()]


def test_simulated_mission_graph_moves_the_drones(ros):
    nodes = [WorldNode(parameter_overrides=params(mode="sim")), RadioNode(parameter_overrides=params()),
             CbfNode(parameter_overrides=params())]
    nodes += [AgentNode(parameter_overrides=params(name=f"cf{i + 1}", index=i, model=MODEL)) for i in range(5)]
    probe = rclpy.create_node("probe")
    poses: dict[str, list] = {f"cf{i + 1}": [] for i in range(5)}
    for name, seen in poses.items():
        probe.create_subscription(PoseStamped, f"/{name}/pose",
                                  lambda m, seen=seen: seen.append((m.pose.position.x, m.pose.position.y)), 10)
    executor = SingleThreadedExecutor()
    for node in [*nodes, probe]:
        executor.add_node(node)
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    agents = nodes[3:]
    try:
        moved = [np.hypot(*np.subtract(seen[-1], seen[0])) for seen in poses.values() if len(seen) > 1]
        assert len(moved) == 5 and max(moved) > 0.05                   # the policies fly the drones
        assert all(a.core.stats.rejected == 0 for a in agents)         # every payload decoded
        assert nodes[1].radio.stats["delivered"] > 0
    finally:
        executor.shutdown()
        for node in [*nodes, probe]:
            node.destroy_node()
