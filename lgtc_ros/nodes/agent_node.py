"""One drone's decision loop: `ros2 run lgtc_ros agent_node --ros-args -p name:=cf1 -p index:=0`.

Parameters: scenario, names, name, index (0-based, the drone's place in `names`), model (exported
policy; default the shipped one), any_consumers, max_message_age_s. Every decision is
`runtime.onboard.OnboardController`'s; this node only moves messages and runs the 20 Hz timer.
"""
from __future__ import annotations

import torch
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros.frames import ArenaFrame
from lgtc_ros.nodes.common import QOS_DEPTH, mission, now_s, run, to_msg, twist
from lgtc_ros.runtime.drone import DroneAgent, load_drone_modules
from lgtc_ros.runtime.onboard import OnboardController, Skip


class AgentNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_agent", **kwargs)
        torch.set_num_threads(1)  # one drone, one core's worth: N of these share the machine
        scenario, names = mission(self)
        index = self.declare_parameter("index", 0).value
        name = self.declare_parameter("name", names[index]).value
        model = self.declare_parameter("model", "").value
        any_consumers = self.declare_parameter("any_consumers", False).value
        max_age = self.declare_parameter("max_message_age_s", 0.5).value
        if not model:
            from lgtc_ros.cli import default_model

            if default_model() is None:
                raise ValueError("parameter 'model' is empty and no shipped model was found")
            model = str(default_model())
        (module,), _ = load_drone_modules(model, scenario, 1, any_consumers=any_consumers)
        agent = DroneAgent(index, module, module.state_dim, module.feature_dim)
        self.core = OnboardController(agent, ArenaFrame.from_scenario(scenario), scenario.n_consumers,
                                      scenario.n_resources, max_age)
        self.create_subscription(PoseStamped, f"/{name}/pose", self._on_pose, QOS_DEPTH)
        self.create_subscription(Float64MultiArray, "/lgtc/demands",
                                 lambda m: self.core.on_demands(m, now_s(self)), QOS_DEPTH)
        self.create_subscription(Float64MultiArray, f"/{name}/lgtc/supply",
                                 lambda m: self.core.on_supply(m, now_s(self)), QOS_DEPTH)
        self.create_subscription(Float64MultiArray, f"/{name}/lgtc/inbox",
                                 lambda m: self.core.on_neighbour(m, now_s(self)), 4 * QOS_DEPTH)
        self.pub_message = self.create_publisher(Float64MultiArray, f"/{name}/lgtc/message", QOS_DEPTH)
        self.pub_state = self.create_publisher(Float64MultiArray, f"/{name}/lgtc/state", QOS_DEPTH)
        self.pub_cmd = self.create_publisher(TwistStamped, f"/{name}/cmd_vel_nominal", QOS_DEPTH)
        self.skipped: dict[str, int] = {}
        self.create_timer(scenario.dt, self._tick)
        self.get_logger().info(f"{name}: {model} at {1 / scenario.dt:.0f} Hz")

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.core.on_pose([p.x, p.y, p.z])

    def _tick(self) -> None:
        out = self.core.tick(now_s(self))
        if isinstance(out, Skip):
            n = self.skipped[out.reason] = self.skipped.get(out.reason, 0) + 1
            if n & (n - 1) == 0:  # 1st, 2nd, 4th, ... : visible, never a flood
                self.get_logger().warning(f"no decision: {out.reason} ({n} ticks so far)")
            return
        self.pub_message.publish(to_msg(out.message))
        self.pub_state.publish(to_msg(out.state))
        self.pub_cmd.publish(twist(self, out.v_nominal_m_s))


def main(args=None) -> None:
    run(AgentNode, args)


if __name__ == "__main__":
    main()
