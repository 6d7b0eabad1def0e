"""From safe velocities to flying Crazyflies: one `flight.DroneFlight` per drone turns
`/{name}/cmd_vel_safe` into streamed full-state setpoints, hovers on late commands and lands on
silence, on request, or when the world grounds the drone (`/{name}/lgtc/supply` active = 0).

backend "crazyswarm2": publishes `/{name}/cmd_full_state` (crazyflie_interfaces/msg/FullState;
the only streaming setpoint Crazyswarm2's simulator implements) and calls its `/{name}/takeoff`,
`/{name}/land` and `/{name}/notify_setpoints_stop` services. backend "cflib": talks to the
radios directly through `cflib_link.CflibSwarmLink` (parameter `uris`, one per name).

Services: `/lgtc/start` and `/lgtc/land` (std_srvs/srv/Trigger) take off / land the swarm;
`autostart` takes off at the first tick. Parameters: scenario, names, backend, uris,
takeoff_s, land_s, land_height_m, hover_after_s, land_after_s, max_lead_m, autostart.
"""
from __future__ import annotations

import math

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.bridge import FullStateSetpoint
from lgtc_ros.flight import DroneFlight, Phase
from lgtc_ros.frames import FRAME_ID
from lgtc_ros.nodes.common import LATCHED, LATEST, TAKE_LATEST, guarded, mission, now_s, run, stamp_s


class Crazyswarm2Backend:
    """Crazyswarm2's per-drone topics and services (crazyflie_interfaces imported only here)."""

    def __init__(self, node: Node, names: list[str], land_height_m: float):
        from crazyflie_interfaces.msg import FullState
        from crazyflie_interfaces.srv import Land, NotifySetpointsStop, Takeoff

        self.node, self.land_height_m = node, land_height_m
        self.FullState, self.Land, self.Takeoff, self.Notify = FullState, Land, Takeoff, NotifySetpointsStop
        self.pub = {n: node.create_publisher(FullState, f"/{n}/cmd_full_state", 1) for n in names}
        self.takeoff_cli = {n: node.create_client(Takeoff, f"/{n}/takeoff") for n in names}
        self.land_cli = {n: node.create_client(Land, f"/{n}/land") for n in names}
        self.notify_cli = {n: node.create_client(NotifySetpointsStop, f"/{n}/notify_setpoints_stop") for n in names}

    def ready(self) -> bool:
        """Crazyswarm2's services are up (a request sent before is lost)."""
        return all(c.service_is_ready() for clients in (self.takeoff_cli, self.land_cli, self.notify_cli)
                   for c in clients.values())

    def takeoff(self, name: str, height_m: float, duration_s: float) -> None:
        req = self.Takeoff.Request()
        req.group_mask, req.height, req.duration = 0, float(height_m), Duration(seconds=duration_s).to_msg()
        self.takeoff_cli[name].call_async(req)

    def land(self, name: str, duration_s: float) -> None:
        stop = self.Notify.Request()  # streaming setpoints pre-empt high-level commands: hand over first
        stop.group_mask, stop.remain_valid_millisecs = 0, 100
        self.notify_cli[name].call_async(stop)
        req = self.Land.Request()
        req.group_mask, req.height, req.duration = 0, self.land_height_m, Duration(seconds=duration_s).to_msg()
        self.land_cli[name].call_async(req)

    def send(self, name: str, sp: FullStateSetpoint) -> None:
        msg = self.FullState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = FRAME_ID
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in sp.position_m)
        msg.pose.orientation.z, msg.pose.orientation.w = math.sin(sp.yaw_rad / 2), math.cos(sp.yaw_rad / 2)
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in sp.velocity_m_s)
        msg.acc.x, msg.acc.y, msg.acc.z = (float(v) for v in sp.acceleration_m_s2)
        self.pub[name].publish(msg)

    def close(self) -> None:
        pass


class CflibBackend:
    def __init__(self, names: list[str], uris: list[str], frame: ArenaFrame, dt: float):
        from lgtc_ros.cflib_link import CflibSwarmLink

        if len(uris) != len(names):
            raise ValueError(f"backend cflib needs one uri per drone: {len(uris)} uris for {len(names)} names")
        self.link = CflibSwarmLink(dict(zip(names, uris)), frame, dt)
        self.link.connect()

    def ready(self) -> bool:
        return self.link.connected

    def takeoff(self, name: str, height_m: float, duration_s: float) -> None:
        self.link.takeoff(height_m, duration_s, name=name)

    def land(self, name: str, duration_s: float) -> None:
        self.link.land(duration_s, name=name)

    def send(self, name: str, sp: FullStateSetpoint) -> None:
        self.link.send(name, sp)

    def close(self) -> None:
        self.link.close()


class BridgeNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_bridge", **kwargs)
        scenario, names = mission(self)
        p = {k: self.declare_parameter(k, v).value for k, v in {
            "backend": "crazyswarm2", "uris": [""], "takeoff_s": 3.0, "land_s": 3.0, "land_height_m": 0.04,
            "hover_after_s": 0.25, "land_after_s": 1.5, "max_lead_m": 0.3, "autostart": False,
            "pose_from_tf": False}.items()}
        self.frame, self.names, self.r = ArenaFrame.from_scenario(scenario), names, scenario.n_resources
        self.p = p
        self.flights = {n: DroneFlight(self.frame, scenario.dt, p["takeoff_s"], p["hover_after_s"],
                                       p["land_after_s"], p["max_lead_m"]) for n in names}
        if p["backend"] == "crazyswarm2":
            self.backend = Crazyswarm2Backend(self, names, p["land_height_m"])
        elif p["backend"] == "cflib":
            self.backend = CflibBackend(names, [u for u in p["uris"] if u], self.frame, scenario.dt)
        else:
            raise ValueError(f"backend = {p['backend']!r}: must be crazyswarm2 or cflib")
        self.stats = comm.DecodeStats()
        for i, name in enumerate(names):
            f = self.flights[name]
            self.create_subscription(PoseStamped, f"{name}/pose",
                                     lambda m, f=f: f.on_pose([m.pose.position.x, m.pose.position.y,
                                                               m.pose.position.z]), TAKE_LATEST)
            self.create_subscription(TwistStamped, f"{name}/cmd_vel_safe",
                                     lambda m, f=f: f.on_command(stamp_s(m.header), [m.twist.linear.x,
                                                                                     m.twist.linear.y]), TAKE_LATEST)
            self.create_subscription(Float64MultiArray, f"{name}/lgtc/supply",
                                     lambda m, f=f: self._on_supply(f, m), TAKE_LATEST)
        self.create_service(Trigger, "lgtc/start", self._start)
        self.create_service(Trigger, "lgtc/land", self._land)
        self._autostart = p["autostart"]
        # the world's mission clock starts when the whole swarm is airborne (latched for late joiners)
        self.pub_airborne = self.create_publisher(Bool, "lgtc/airborne", LATCHED)
        self._announced = False
        self.tf = None
        if p["pose_from_tf"]:  # Crazyswarm2's simulator: TF world -> {name}, no /{name}/pose
            from tf2_ros import Buffer, TransformListener

            self.tf = Buffer()
            self.tf_listener = TransformListener(self.tf, self)
            self.pose_pubs = {n: self.create_publisher(PoseStamped, f"{n}/pose", LATEST) for n in names}
        self.create_timer(scenario.dt, guarded(self, self._tick))

    def _poses_from_tf(self) -> None:
        from tf2_ros import TransformException

        for name, pub in self.pose_pubs.items():
            try:
                t = self.tf.lookup_transform(FRAME_ID, name, Time())
            except TransformException:
                continue  # not yet broadcast: the drone waits for its pose
            msg = PoseStamped()
            msg.header = t.header
            tr = t.transform.translation
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = tr.x, tr.y, tr.z
            msg.pose.orientation = t.transform.rotation
            pub.publish(msg)

    def _on_supply(self, flight: DroneFlight, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self), 0.5, self.r, self.stats)
        if got is not None and not got.active:
            flight.land()

    def _start(self, request, response):
        if not self.backend.ready():
            response.success, response.message = False, "the drones' services are not available yet"
            return response
        for f in self.flights.values():
            f.start(now_s(self))
        response.success, response.message = True, f"taking off: {', '.join(self.names)}"
        return response

    def _land(self, request, response):
        for f in self.flights.values():
            f.land()
        response.success, response.message = True, "landing"
        return response

    def _tick(self) -> None:
        now = now_s(self)
        if self.tf is not None:
            self._poses_from_tf()
        if self._autostart and self.backend.ready():
            self._autostart = False
            self._start(None, Trigger.Response())
        for name, f in self.flights.items():
            cmd = f.update(now)
            if cmd.kind == "takeoff":
                self.backend.takeoff(name, self.frame.flight_height_m, self.p["takeoff_s"])
            elif cmd.kind == "land":
                self.get_logger().info(f"{name}: landing")
                self.backend.land(name, self.p["land_s"])
            elif cmd.kind == "setpoint":
                self.backend.send(name, cmd.setpoint)
        phases = [f.phase for f in self.flights.values()]  # every takeoff over (a drone may already be landing)
        if not self._announced and Phase.MISSION in phases and all(p in (Phase.MISSION, Phase.LANDING) for p in phases):
            self._announced = True
            self.pub_airborne.publish(Bool(data=True))
            self.get_logger().info("every drone is airborne: the mission starts")

    def destroy_node(self):
        self.backend.close()
        return super().destroy_node()


def main(args=None) -> None:
    run(BridgeNode, "lgtc_bridge", args)


if __name__ == "__main__":
    main()
