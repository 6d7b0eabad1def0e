"""The mission world: `runtime.plant.MissionPlant` at the mission rate.

mode "sim": integrates `{name}/cmd_vel_safe` and publishes `{name}/pose` (the embedded simulator
of sim.launch.py). mode "hardware": reads the real `{name}/pose` (Crazyswarm2) and runs only the
virtual resources. Both publish `lgtc/demands`, `{name}/lgtc/supply`, `lgtc/reward_terms` and,
when the mission starts, `lgtc/meta` (latched; the agents reset their state on it, a recording
keeps it). Everything one tick publishes carries the tick's time as its stamp: `lgtc replay`
groups a recording into ticks by these stamps.

When the mission starts (its event clock and, in sim, the drones' motion):
- sim: once every agent has published its first nominal command (it has loaded its model and
  has its inputs), or after `start_timeout_s`; until then the world publishes the start state;
- hardware: once the bridge reports the swarm airborne (`lgtc/airborne`).

With `markers` true it also publishes `lgtc/markers` (visualization_msgs/MarkerArray, frame `world`,
metres; drawn by `lgtc_ros.markers`) every `markers_period_ticks` ticks, for RViz: the consumers
sized by their open demand, each drone coloured by the consumer it chose (`{name}/lgtc/state`),
safety discs and the links within C. Off by default: it subscribes to N more topics, N more
callbacks every tick in the node that sets the mission's clock.

Parameters: scenario, names, mode, seed, max_command_age_s, start_timeout_s, markers,
markers_period_ticks.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.time import Time
from std_msgs.msg import Bool, Float64MultiArray, String
from visualization_msgs.msg import Marker, MarkerArray

from lgtc_ros import comm
from lgtc_ros.bags import meta_json, mission_meta
from lgtc_ros.frames import FRAME_ID
from lgtc_ros.markers import ChoiceBoard, mission_markers
from lgtc_ros.nodes.common import (LATCHED, LATEST, RECORD, TAKE_LATEST, declare, guarded, mission, now_s, run,
                                   stamp_s, to_msg)
from lgtc_ros.runtime.plant import MissionPlant, demand_broadcast

SHAPES = {"cylinder": Marker.CYLINDER, "sphere": Marker.SPHERE, "line_list": Marker.LINE_LIST}


class WorldNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_world", **kwargs)
        scenario, names = mission(self)
        self.scenario_file = self.get_parameter("scenario").value
        self.mode = declare(self, "mode", "sim", "sim: simulate the drones too; hardware: real drones' poses, "
                            "virtual resources", choices=("sim", "hardware"))
        self.seed = declare(self, "seed", 0, "the mission's random seed (start state, events)", lo=0)
        # a held command may fly at most 1/gamma = 2 ticks: the CBF's discrete-time guarantee
        # (safety/cbf.py) covers that long; an older one stops the drone
        self.max_age = declare(self, "max_command_age_s", 2 * scenario.dt,
                               "a safe command older than this stops the drone (sim), s", lo=0.0, hi=10.0)
        self.start_timeout = declare(self, "start_timeout_s", 60.0, "sim: start the mission after this long even "
                                     "if some agents have not commanded yet, s", lo=0.0)
        self.markers = declare(self, "markers", False, "publish lgtc/markers (visualization_msgs/MarkerArray) "
                               "for RViz; subscribes to every drone's lgtc/state")
        self.markers_period = declare(self, "markers_period_ticks", 2, "markers: publish every this many ticks",
                                      lo=1, hi=1000)
        self.plant = MissionPlant(scenario, seed=self.seed, mode=self.mode)
        self.names, self.scenario = names, scenario
        n = len(names)
        self.v = np.zeros((n, 2))
        self.v_stamp = np.full(n, -np.inf)
        self.measured = np.full((n, 3), np.nan)
        self.ready = np.zeros(n, dtype=bool)
        self.seen = np.zeros(n, dtype=bool)  # hardware: a pose received from the drone
        self.pub_demands = self.create_publisher(Float64MultiArray, "lgtc/demands", LATEST)
        self.pub_terms = self.create_publisher(Float64MultiArray, "lgtc/reward_terms", RECORD)
        self.pub_meta = self.create_publisher(String, "lgtc/meta", LATCHED)
        self.pub_supply, self.pub_pose, self.readiness = [], [], []
        for i, name in enumerate(names):
            self.pub_supply.append(self.create_publisher(Float64MultiArray, f"{name}/lgtc/supply", LATEST))
            if self.mode == "sim":
                self.pub_pose.append(self.create_publisher(PoseStamped, f"{name}/pose", LATEST))
                self.create_subscription(TwistStamped, f"{name}/cmd_vel_safe",
                                         guarded(self, lambda m, i=i: self._on_cmd(i, m)), TAKE_LATEST)
                self.readiness.append(self.create_subscription(
                    TwistStamped, f"{name}/cmd_vel_nominal", guarded(self, lambda m, i=i: self._on_nominal(i)), TAKE_LATEST))
            else:
                self.create_subscription(PoseStamped, f"{name}/pose",
                                         guarded(self, lambda m, i=i: self._on_pose(i, m)), TAKE_LATEST)
        self.running = False
        self.created = now_s(self)
        if self.mode == "hardware":
            self.create_subscription(Bool, "lgtc/airborne", guarded(self, self._on_airborne), LATCHED)
        self.pub_markers, self.ticks = None, 0
        if self.markers:
            self.pub_markers = self.create_publisher(MarkerArray, "lgtc/markers", LATEST)
            self.marker_msgs = MarkerMessages()
            self.choices, self.state_stats = ChoiceBoard(n), comm.DecodeStats()
            for i, name in enumerate(names):
                self.create_subscription(Float64MultiArray, f"{name}/lgtc/state",
                                         guarded(self, lambda m, i=i: self._on_state(i, m)), TAKE_LATEST)
        self.timer = self.create_timer(scenario.dt, guarded(self, self._step))

    # ------------------------------------------------------------------ start

    def _begin(self, now_ns: int) -> None:
        s = self.scenario
        meta = mission_meta(self.names, s.arena_size_m, s.altitude_m, now_ns, {
            "scenario": s.name, "scenario_file": self.scenario_file, "seed": self.seed, "dt": s.dt, "mode": self.mode,
            "comm_radius": s.comm_radius, "consumer_radius": s.consumer_radius, "safety_radius": s.safety_radius,
            "events": [{"time_s": e.time_s, "kind": e.kind, "agent": e.agent, "select": e.select} for e in s.events]})
        self.pub_meta.publish(String(data=meta_json(meta)))
        self.running = True
        for sub in self.readiness:  # only the start needed them: N callbacks a tick fewer
            self.destroy_subscription(sub)
        self.readiness = []

    def _on_nominal(self, i: int) -> None:
        self.ready[i] = True

    def _on_airborne(self, msg: Bool) -> None:
        if msg.data and not self.running:
            unseen = np.flatnonzero(~self.seen)
            if unseen.size:
                self.plant.ground(unseen)
                self.get_logger().warning(f"no pose from {', '.join(self.names[i] for i in unseen)} before the start: "
                                          "out of the mission")
            self._begin(self.get_clock().now().nanoseconds)
            self.get_logger().info("swarm airborne: mission clock started")

    def _maybe_start(self, now: float, now_ns: int) -> None:
        if self.ready.all():
            self.get_logger().info(f"every agent commands after {now - self.created:.1f} s: mission clock started")
        elif now - self.created >= self.start_timeout:
            waiting = [n for n, ok in zip(self.names, self.ready) if not ok]
            self.get_logger().warning(f"start_timeout_s = {self.start_timeout} s is over: mission clock started "
                                      f"without a command from {', '.join(waiting)}")
        else:
            return
        self._begin(now_ns)

    # ------------------------------------------------------------------ inputs

    def _on_cmd(self, i: int, msg: TwistStamped) -> None:
        t = stamp_s(msg.header)
        if t >= self.v_stamp[i]:  # out of order: an older command never replaces a newer one
            self.v[i] = msg.twist.linear.x, msg.twist.linear.y
            self.v_stamp[i] = t

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.measured[i] = p.x, p.y, p.z
        self.seen[i] = True

    def _on_state(self, i: int, msg: Float64MultiArray) -> None:
        s = self.scenario
        self.choices.record(i, comm.decode_agent_state(msg, expect_m=s.n_consumers, stats=self.state_stats))

    # ------------------------------------------------------------------ the tick

    def _step(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        now = now_ns * 1e-9
        if not self.running and self.mode == "sim":
            self._maybe_start(now, now_ns)
        if not self.running:
            self._publish(self.plant.observe(now), now_ns)  # the drones get their inputs while waiting
            return
        if self.mode == "sim":
            stale = now - self.v_stamp > self.max_age
            out = self.plant.step(now, np.where(stale[:, None], np.nan, self.v))
        else:
            flying = self.plant.world.active[0].numpy().copy()
            out = self.plant.step(now, measured_pos_m=self.measured)
            self.measured[:] = np.nan  # a pose is used once: no fresh pose -> the last one is kept
            for i in np.flatnonzero(flying & ~out.active):
                self.get_logger().info(f"{self.names[i]} is out of the mission (landed, discharged or on the ground)")
        self._publish(out, now_ns)
        if out.done:
            self.get_logger().info("mission time is over: the world stops")
            self.timer.cancel()

    def _publish(self, out, now_ns: int) -> None:
        self.pub_demands.publish(to_msg(out.demands))
        for pub, payload in zip(self.pub_supply, out.supplies):
            pub.publish(to_msg(payload))
        if out.reward_terms is not None:
            self.pub_terms.publish(to_msg(out.reward_terms))
        stamp = Time(nanoseconds=now_ns).to_msg()
        for pub, p in zip(self.pub_pose, out.poses_m):
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, FRAME_ID
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
            msg.pose.orientation.w = 1.0
            pub.publish(msg)
        if self.pub_markers is not None:
            # RViz needs no 20 Hz (every 2nd tick by default), and nothing is drawn while nobody looks
            if self.ticks % self.markers_period == 0 and self.pub_markers.get_subscription_count():
                self.pub_markers.publish(self._markers(out, now_ns, stamp))
            self.ticks += 1

    def _markers(self, out, now_ns: int, stamp) -> MarkerArray:
        """`lgtc_ros.markers` decides what is drawn; this only converts it."""
        now = now_ns * 1e-9
        drawn = mission_markers(self.scenario, self.plant.frame, demand_broadcast(self.plant.world, now),
                                out.poses_m, out.active, self.choices.current(now))
        return self.marker_msgs.convert(drawn, stamp)


class MarkerMessages:
    """`lgtc_ros.markers.Marker`s as one visualization_msgs/MarkerArray (frame `world`; a hidden
    marker becomes a DELETE). The messages are built once and updated in place: a marker's (ns, id)
    never changes, and a new Marker message costs ~60 us (its nested fields) against ~1 us to
    update one; at 50 drones that is ~120 markers and ~1400 link ends a frame. publish() copies
    the message, so changing it afterwards is safe."""

    def __init__(self) -> None:
        self.msgs: dict[tuple[str, int], Marker] = {}
        self.points: dict[tuple[str, int], list[Point]] = {}  # each line list's own points, reused too
        self.array = MarkerArray()

    def convert(self, drawn, stamp) -> MarkerArray:
        self.array.markers = [self._one(m, stamp) for m in drawn]
        return self.array

    def _one(self, m, stamp) -> Marker:
        msg = self.msgs.get((m.ns, m.id))
        if msg is None:
            msg = self.msgs[(m.ns, m.id)] = Marker(ns=m.ns, id=m.id, type=SHAPES[m.shape])
            msg.header.frame_id, msg.pose.orientation.w = FRAME_ID, 1.0
        msg.header.stamp = stamp
        if not m.visible:
            msg.action = Marker.DELETE
            return msg
        msg.action = Marker.ADD
        p, s, c = msg.pose.position, msg.scale, msg.color
        p.x, p.y, p.z = m.position_m
        s.x, s.y, s.z = m.scale_m
        c.r, c.g, c.b, c.a = m.color.r, m.color.g, m.color.b, m.color.a
        if m.points_m or msg.points:
            pool = self.points.setdefault((m.ns, m.id), [])
            pool.extend(Point() for _ in range(len(m.points_m) - len(pool)))
            for q, (x, y, z) in zip(pool, m.points_m):
                q.x, q.y, q.z = x, y, z
            msg.points = pool[:len(m.points_m)]
        return msg


def main(args=None) -> None:
    run(WorldNode, "lgtc_world", args)


if __name__ == "__main__":
    main()
