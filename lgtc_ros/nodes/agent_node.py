"""One drone's decision loop, in the drone's namespace:

    ros2 run lgtc_ros agent_node --ros-args -r __ns:=/cf1 -p scenario:=discharge_5x3

Topics (relative: `pose` is `/cf1/pose`) and the decision itself: `nodes.drone_topics` and
`runtime.onboard.OnboardController`; this node adds the 20 Hz timer. Parameters: scenario,
names (the drone is the one its namespace names), model (default: the shipped model that fits
the scenario), any_consumers, max_message_age_s.
"""
from __future__ import annotations

from rclpy.node import Node

from lgtc_ros.nodes.common import StartupError, guarded, mission, now_s, run, swarm_topic
from lgtc_ros.nodes.drone_topics import DroneTopics, MissionInputs, declare_policy, load_controllers
from lgtc_ros.policy.certificate import describe_model


class AgentNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (namespace, parameter_overrides, ...)
        super().__init__("lgtc_agent", **kwargs)
        scenario, names = mission(self)
        name = self.get_namespace().rstrip("/").rpartition("/")[2]
        if name not in names:
            raise StartupError("names", names, f"this node's namespace {self.get_namespace()!r} is not a drone: "
                               "start it in its drone's namespace (--ros-args -r __ns:=/cf1)")
        model, any_consumers, max_age = declare_policy(self)
        (controller,) = load_controllers(scenario, [names.index(name)], model, any_consumers, max_age)
        self.drone = DroneTopics(self, controller, "")
        self.inputs = MissionInputs(self, [self.drone], swarm_topic(self, "lgtc/demands"),
                                    swarm_topic(self, "lgtc/meta"), scenario, max_age)
        self.create_timer(scenario.dt, guarded(self, lambda: self.drone.tick(now_s(self))))
        self.get_logger().info(f"{model or 'shipped model'} at {1 / scenario.dt:.0f} Hz; "
                               f"{describe_model(model, scenario, any_consumers)}")


def main(args=None) -> None:
    run(AgentNode, "lgtc_agent", args)


if __name__ == "__main__":
    main()
