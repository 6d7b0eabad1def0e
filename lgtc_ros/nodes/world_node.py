"""The mission world: `runtime.plant.MissionPlant` at the mission rate.

mode "sim": integrates `/{name}/cmd_vel_safe` and publishes `/{name}/pose` (the embedded
simulator of sim.launch.py). mode "hardware": reads the real `/{name}/pose` (Crazyswarm2) and runs
only the virtual resources. Both publish `/lgtc/demands`, `/{name}/lgtc/supply` and
`/lgtc/reward_terms`. Parameters: scenario, names, mode, seed, max_command_age_s.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import Bool, Float64MultiArray, String

from lgtc_ros.bags import meta_json, mission_meta
from lgtc_ros.nodes.common import QOS_DEPTH, mission, now_s, run, stamp_s, to_msg
from lgtc_ros.runtime.plant import MissionPlant


class WorldNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_world", **kwargs)
        scenario, names = mission(self)
        self.mode = self.declare_parameter("mode", "sim").value
        seed = self.declare_parameter("seed", 0).value
        self.max_age = self.declare_parameter("max_command_age_s", 0.15).value
        self.plant = MissionPlant(scenario, seed=seed, mode=self.mode)
        n = len(names)
        self.v = np.zeros((n, 2))
        self.v_stamp = np.full(n, -np.inf)
        self.measured = np.full((n, 3), np.nan)
        self.pub_demands = self.create_publisher(Float64MultiArray, "/lgtc/demands", QOS_DEPTH)
        self.pub_terms = self.create_publisher(Float64MultiArray, "/lgtc/reward_terms", QOS_DEPTH)
        self.pub_supply, self.pub_pose = [], []
        for i, name in enumerate(names):
            self.pub_supply.append(self.create_publisher(Float64MultiArray, f"/{name}/lgtc/supply", QOS_DEPTH))
            if self.mode == "sim":
                self.pub_pose.append(self.create_publisher(PoseStamped, f"/{name}/pose", QOS_DEPTH))
                self.create_subscription(TwistStamped, f"/{name}/cmd_vel_safe",
                                         lambda m, i=i: self._on_cmd(i, m), QOS_DEPTH)
            else:
                self.create_subscription(PoseStamped, f"/{name}/pose", lambda m, i=i: self._on_pose(i, m), QOS_DEPTH)
        # a latched description of the mission, stamped with its start: `lgtc replay` needs it in a
        # recording of this graph
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_meta = self.create_publisher(String, "/lgtc/meta", latched)
        self._meta = (names, scenario, seed)
        self._publish(self.plant.observe(now_s(self)))
        # hardware: the mission (and its event clock) starts once the bridge reports the swarm airborne
        self.running = False
        if self.mode == "sim":
            self._begin()
        else:
            self.create_subscription(Bool, "/lgtc/airborne", self._on_airborne, latched)
        self.timer = self.create_timer(scenario.dt, self._step)

    def _begin(self) -> None:
        names, scenario, seed = self._meta
        meta = mission_meta(names, scenario.arena_size_m, scenario.altitude_m, self.get_clock().now().nanoseconds,
                            {"scenario": scenario.name, "seed": seed, "dt": scenario.dt, "mode": self.mode,
                             "events": [{"time_s": e.time_s, "kind": e.kind, "agent": e.agent, "select": e.select}
                                        for e in scenario.events]})
        self.pub_meta.publish(String(data=meta_json(meta)))
        self.running = True

    def _on_airborne(self, msg: Bool) -> None:
        if msg.data and not self.running:
            self._begin()
            self.get_logger().info("swarm airborne: mission clock started")

    def _on_cmd(self, i: int, msg: TwistStamped) -> None:
        self.v[i] = msg.twist.linear.x, msg.twist.linear.y
        self.v_stamp[i] = stamp_s(msg.header)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.measured[i] = p.x, p.y, p.z

    def _step(self) -> None:
        now = now_s(self)
        if not self.running:
            self._publish(self.plant.observe(now))  # drones get demands and supplies while waiting
            return
        if self.mode == "sim":
            stale = now - self.v_stamp > self.max_age
            out = self.plant.step(now, np.where(stale[:, None], np.nan, self.v))
        else:
            out = self.plant.step(now, measured_pos_m=self.measured)
            self.measured[:] = np.nan  # a pose is used once: no fresh pose -> the last one is kept
        self._publish(out)
        if out.done:
            self.get_logger().info("mission time is over: the world stops")
            self.timer.cancel()

    def _publish(self, out) -> None:
        self.pub_demands.publish(to_msg(out.demands))
        for pub, payload in zip(self.pub_supply, out.supplies):
            pub.publish(to_msg(payload))
        if out.reward_terms is not None:
            self.pub_terms.publish(to_msg(out.reward_terms))
        stamp = self.get_clock().now().to_msg()
        for pub, p in zip(self.pub_pose, out.poses_m):
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, "world"
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
            msg.pose.orientation.w = 1.0
            pub.publish(msg)


def main(args=None) -> None:
    run(WorldNode, args)


if __name__ == "__main__":
    main()
