"""What every node shares: parameters naming the mission, clock, message conversions, main()."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, MultiArrayLayout

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
