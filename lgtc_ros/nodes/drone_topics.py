"""One drone's topics around its `runtime.onboard.OnboardController`: the one place a drone's
decision meets ROS, shared by `agent_node` (one drone per process, in the drone's namespace:
prefix "") and `swarm_node` (N drones in one process, in the swarm's namespace: prefix "cf1/").

in:  {prefix}pose (geometry_msgs/PoseStamped, metres, world), {prefix}lgtc/supply,
     {prefix}lgtc/inbox (the radio's bundle); the demand broadcast and the mission description
     are swarm-wide: the node subscribes once and hands them to every drone
out: {prefix}lgtc/message (to the radio), {prefix}lgtc/state (record), {prefix}cmd_vel_nominal
     (to the CBF; geometry_msgs/TwistStamped, m/s, world)
"""
from __future__ import annotations

import json

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, String

from lgtc_ros import comm
from lgtc_ros.nodes.common import (LATCHED, LATEST, RECORD, TAKE_LATEST, StartupError, declare, guarded, now_s,
                                   to_msg, twist)


def declare_policy(node: Node) -> tuple[str, bool, float]:
    """The policy parameters of agent_node and swarm_node: model, any_consumers, max_message_age_s."""
    model = declare(node, "model", "", "exported policy (.pt beside its .json); empty: the shipped model "
                    "that fits the scenario")
    any_consumers = declare(node, "any_consumers", False, "fly a model trained for another consumer count")
    max_age = declare(node, "max_message_age_s", 0.5, "inputs older than this are ignored, s", lo=0.01, hi=10.0)
    return model, any_consumers, max_age


def load_controllers(scenario, indices: list[int], model: str, any_consumers: bool, max_age: float) -> list:
    """An `OnboardController` per drone index, each with its own copy of the policy. Errors name
    the `model` parameter. torch and the runtime are imported here, once the node is being built
    (its parameters read, Ctrl-C quiet): importing torch takes seconds, and a module that merely
    names the node (tests, `python -m lgtc_ros.nodes.agent_node` before `run`) should not pay it."""
    import torch

    from lgtc_ros.frames import ArenaFrame
    from lgtc_ros.policy.export import ModelMismatch
    from lgtc_ros.policy.shipped import NoShippedModel, default_model
    from lgtc_ros.runtime.drone import DroneAgent, load_drone_modules
    from lgtc_ros.runtime.onboard import OnboardController

    torch.set_num_threads(1)  # one drone, one core's worth: N of these share the machine
    if not model:
        try:
            model = str(default_model(scenario, any_consumers=any_consumers))
        except NoShippedModel as exc:
            raise StartupError("model", "", str(exc)) from None
    try:
        modules, _ = load_drone_modules(model, scenario, len(indices), any_consumers=any_consumers)
    except (ModelMismatch, OSError, RuntimeError, ValueError, KeyError) as exc:
        raise StartupError("model", model, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    frame = ArenaFrame.from_scenario(scenario)
    return [OnboardController(DroneAgent(i, m, m.state_dim, m.feature_dim), frame, scenario.n_consumers,
                              scenario.n_resources, max_age) for i, m in zip(indices, modules)]


class DroneTopics:
    def __init__(self, node: Node, controller, prefix: str) -> None:
        self.node, self.core, self.prefix = node, controller, prefix
        node.create_subscription(PoseStamped, f"{prefix}pose", guarded(node, self._on_pose), TAKE_LATEST)
        node.create_subscription(Float64MultiArray, f"{prefix}lgtc/supply",
                                 guarded(node, lambda m: controller.on_supply(m, now_s(node))), TAKE_LATEST)
        node.create_subscription(Float64MultiArray, f"{prefix}lgtc/inbox",
                                 guarded(node, lambda m: controller.on_inbox(m, now_s(node))), TAKE_LATEST)
        self.pub_message = node.create_publisher(Float64MultiArray, f"{prefix}lgtc/message", LATEST)
        self.pub_state = node.create_publisher(Float64MultiArray, f"{prefix}lgtc/state", RECORD)
        self.pub_cmd = node.create_publisher(TwistStamped, f"{prefix}cmd_vel_nominal", LATEST)
        self.skipped: dict[str, int] = {}
        self.decisions = 0

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.core.on_pose((p.x, p.y, p.z))

    def tick(self, now: float) -> None:
        from lgtc_ros.runtime.onboard import Skip

        out = self.core.tick(now)
        if isinstance(out, Skip):
            n = self.skipped[out.reason] = self.skipped.get(out.reason, 0) + 1
            if out.reason == "landed" or n & (n - 1):  # 1st, 2nd, 4th, ...: visible, never a flood
                return
            if self.decisions or not out.reason.startswith("no_"):  # an input lost mid-mission, or bad
                self.node.get_logger().warning(f"{self.prefix}no decision: {out.reason} ({n} ticks so far)")
            elif n == 1:  # still starting: the world or the radio may start later than this node
                self.node.get_logger().info(f"{self.prefix}waiting for the first {out.reason[3:]} message")
            return
        self.decisions += 1
        self.pub_message.publish(to_msg(out.message))
        self.pub_state.publish(to_msg(out.state()))
        self.pub_cmd.publish(twist(self.node, out.v_nominal_m_s))


class MissionInputs:
    """The swarm-wide inputs of a node's drones: the demand broadcast (decoded once, handed to every
    drone) and the mission description (a new mission resets every drone's recurrent state, so
    the first decision of a mission starts from the same state as in the runtime)."""

    def __init__(self, node: Node, drones: list[DroneTopics], demands_topic: str, meta_topic: str, scenario,
                 max_age: float) -> None:
        self.node, self.drones, self.scenario, self.max_age = node, drones, scenario, max_age
        self.stats = comm.DecodeStats()
        self.mission_start: int | None = None
        node.create_subscription(Float64MultiArray, demands_topic, guarded(node, self._on_demands), TAKE_LATEST)
        node.create_subscription(String, meta_topic, guarded(node, self._on_meta), LATCHED)

    def _on_demands(self, msg: Float64MultiArray) -> None:
        s = self.scenario
        got = comm.decode_demands(msg, now_s(self.node), self.max_age, s.n_consumers, s.n_resources, self.stats)
        if got is not None:
            for d in self.drones:
                d.core.set_demands(got)

    def _on_meta(self, msg: String) -> None:
        try:
            start = int(json.loads(msg.data)["start_epoch_ns"])
        except (ValueError, KeyError, TypeError):
            self.node.get_logger().warning("lgtc/meta is not a mission description; ignored")
            return
        if start != self.mission_start:
            self.mission_start = start
            for d in self.drones:
                d.core.reset()
