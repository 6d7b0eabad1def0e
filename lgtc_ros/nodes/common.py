"""What every node shares: parameters naming the mission, clock, message conversions, main()."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, MultiArrayLayout

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.comm import FloatArray, default_names
from lgtc_ros.scenario import Scenario, load_scenario, resolve_scenario

QOS_DEPTH = 10


def mission(node: Node) -> tuple[Scenario, list[str]]:
    """Declare and read `scenario` (bundled name or YAML path) and `names` (default cf1..cfN)."""
    scenario = load_scenario(resolve_scenario(node.declare_parameter("scenario", "paper_10x4").value))
    names = list(node.declare_parameter("names", list(default_names(scenario.n_agents))).value)
    if len(names) != scenario.n_agents:
        raise ValueError(f"{len(names)} names for the {scenario.n_agents} drones of '{scenario.name}'")
    return scenario, names


def now_s(node: Node) -> float:
    """The node's clock in seconds (simulated time when use_sim_time is set)."""
    return node.get_clock().now().nanoseconds * 1e-9


def to_msg(arr: FloatArray) -> Float64MultiArray:
    return arr.to_msg(Float64MultiArray, MultiArrayLayout, MultiArrayDimension, rclpy=True)


def twist(node: Node, v_m_s: np.ndarray) -> TwistStamped:
    """A world-frame planar velocity (m/s) stamped now."""
    msg = TwistStamped()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = "world"
    msg.twist.linear.x, msg.twist.linear.y = float(v_m_s[0]), float(v_m_s[1])
    return msg


def stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def run(make_node: Callable[[], Node], args=None) -> None:
    """rclpy.init, spin until Ctrl-C or shutdown, clean up (the ROS 2 demos' main())."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


class SwarmView:
    """Every drone's last position (arena units, NaN until its first pose) and whether it still
    flies (from the world's supply status), kept up to date by subscriptions on `node`."""

    def __init__(self, node: Node, scenario: Scenario, names: list[str]):
        self.node, self.frame, self.r = node, ArenaFrame.from_scenario(scenario), scenario.n_resources
        self.pos = np.full((len(names), 2), np.nan)
        self.active = np.ones(len(names), dtype=bool)
        self.stats = comm.DecodeStats()
        for i, name in enumerate(names):
            node.create_subscription(PoseStamped, f"/{name}/pose", lambda m, i=i: self._on_pose(i, m), QOS_DEPTH)
            node.create_subscription(Float64MultiArray, f"/{name}/lgtc/supply",
                                     lambda m, i=i: self._on_supply(i, m), QOS_DEPTH)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        self.pos[i] = self.frame.to_arena(np.array([msg.pose.position.x, msg.pose.position.y]))

    def _on_supply(self, i: int, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self.node), 0.5, self.r, self.stats)
        if got is not None:
            self.active[i] = got.active

    def located(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions [N,2] with unknown ones at 0, known & flying [N] bool)."""
        known = np.isfinite(self.pos).all(1)
        return np.where(known[:, None], self.pos, 0.0), known & self.active
