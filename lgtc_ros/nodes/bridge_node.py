"""From safe velocities to flying Crazyflies: one `flight.DroneFlight` per drone turns
`{name}/cmd_vel_safe` into streamed full-state setpoints, hovers on late commands or a stale pose,
and lands on silence, on a lost pose, on request, or when the world grounds the drone
(`{name}/lgtc/supply` active = 0). Every decision is the flight core's; this node moves messages.

backend "crazyswarm2": publishes `{name}/cmd_full_state` (crazyflie_interfaces/msg/FullState; the
only streaming setpoint Crazyswarm2's simulator implements) and calls its `{name}/takeoff`,
`{name}/notify_setpoints_stop` and `{name}/land` services. Each call is checked: a service that is
not available, an exception or no answer within `service_timeout_s` is logged (one line naming
the drone and the service) and retried up to `service_attempts` times; a drone whose takeoff
fails stays down (`lgtc/airborne` then means "every drone that could take off flies"), a landing
whose calls fail becomes a streamed descent. land is sent when notify_setpoints_stop has answered
(chained on the future, the executor never blocks).
backend "cflib": talks to the radios directly through `cflib_link.CflibSwarmLink` (parameter
`uris`, one per name) and logs each Crazyflie's state estimate as `{name}/pose`.

Poses (`flight.pose_source`): cflib -> the radio's state-estimate log; crazyswarm2 -> the server's
`{name}/pose` topic, or TF `world -> {name}` with `pose_from_tf` (its simulator has no pose topic).

Services: `lgtc/start` and `lgtc/land` (std_srvs/srv/Trigger) take off / land the swarm;
`autostart` takes off once the drones' services are up. Topic and service names are relative:
the bridge runs in the swarm's namespace, as Crazyswarm2's server does.
"""
from __future__ import annotations

import math

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future
from rclpy.time import Time
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from lgtc_ros import comm
from lgtc_ros.bridge import FullStateSetpoint
from lgtc_ros.flight import DroneFlight, ServiceCall, autostart_due, pose_source, takeoff_outcome
from lgtc_ros.frames import FRAME_ID, ArenaFrame
from lgtc_ros.nodes.common import (LATCHED, LATEST, TAKE_LATEST, StartupError, declare, guarded, mission, now_s,
                                   run, stamp_s)


class ServiceUnavailable(Exception):
    """The request was not sent: nobody serves it (yet)."""


def _done(result=None, exc: Exception | None = None) -> Future:
    future = Future()
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
    return future


class Crazyswarm2Backend:
    """Crazyswarm2's per-drone topics and services (crazyflie_interfaces imported only here)."""

    def __init__(self, node: Node, names: list[str], takeoff_height_m: float, takeoff_s: float,
                 land_height_m: float, land_s: float, remain_valid_ms: int):
        try:
            from crazyflie_interfaces.msg import FullState
            from crazyflie_interfaces.srv import Land, NotifySetpointsStop, Takeoff
        except ImportError as exc:
            raise StartupError("backend", "crazyswarm2", f"crazyflie_interfaces is not importable ({exc}): "
                               "source Crazyswarm2's workspace, or use backend cflib") from None
        self.node, self.FullState = node, FullState
        self.pub = {n: node.create_publisher(FullState, f"{n}/cmd_full_state", LATEST) for n in names}
        self.clients = {n: {"takeoff": node.create_client(Takeoff, f"{n}/takeoff"),
                            "notify_setpoints_stop": node.create_client(NotifySetpointsStop,
                                                                        f"{n}/notify_setpoints_stop"),
                            "land": node.create_client(Land, f"{n}/land")} for n in names}
        takeoff = Takeoff.Request(group_mask=0, height=float(takeoff_height_m),
                                  duration=Duration(seconds=takeoff_s).to_msg())
        land = Land.Request(group_mask=0, height=float(land_height_m), duration=Duration(seconds=land_s).to_msg())
        # streamed setpoints stay valid this long after the hand-over, so the drone is not leveled
        # before the land command arrives
        notify = NotifySetpointsStop.Request(group_mask=0, remain_valid_millisecs=int(remain_valid_ms))
        self.requests = {"takeoff": takeoff, "notify_setpoints_stop": notify, "land": land}

    def ready(self, name: str) -> bool:
        """The drone's services are up (a request sent before is lost)."""
        return all(c.service_is_ready() for c in self.clients[name].values())

    def call(self, name: str, service: str) -> Future:
        client = self.clients[name][service]
        if not client.service_is_ready():
            raise ServiceUnavailable(f"service {client.service_name} not available")
        return client.call_async(self.requests[service])

    def forget(self, name: str, service: str, future: Future) -> None:
        """Drop a request that timed out (its late answer must not pile up in the client)."""
        self.clients[name][service].remove_pending_request(future)

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
    """This package's own radio link: every call is a radio send, done (or raised) on return."""

    def __init__(self, names: list[str], uris: list[str], frame: ArenaFrame, dt: float, takeoff_height_m: float,
                 takeoff_s: float, land_s: float, clock):
        from lgtc_ros.cflib_link import CflibSwarmLink

        if len(uris) != len(names):
            raise StartupError("uris", uris, f"backend cflib needs one uri per drone ({len(names)})")
        self.link = CflibSwarmLink(dict(zip(names, uris)), frame, dt, clock=clock)
        try:
            self.link.connect()
        except ConnectionError as exc:
            raise StartupError("uris", uris, str(exc)) from None
        self.calls = {"takeoff": lambda n: self.link.takeoff(takeoff_height_m, takeoff_s, name=n),
                      "notify_setpoints_stop": lambda n: self.link.stop(n),
                      "land": lambda n: self.link.land(land_s, name=n)}

    def ready(self, name: str) -> bool:
        return self.link.connected

    def call(self, name: str, service: str) -> Future:
        try:
            self.calls[service](name)
        except Exception as exc:  # a radio error: the flight core retries or lands
            return _done(exc=exc)
        return _done()

    def forget(self, name: str, service: str, future: Future) -> None:
        pass

    def send(self, name: str, sp: FullStateSetpoint) -> None:
        self.link.send(name, sp)

    def close(self) -> None:
        self.link.close()


class BridgeNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_bridge", **kwargs)
        scenario, names = mission(self)
        p = {
            "backend": declare(self, "backend", "crazyswarm2", "who flies the drones: Crazyswarm2's server "
                               "(topics and services) or this package's cflib radio link",
                               choices=("crazyswarm2", "cflib")),
            "uris": declare(self, "uris", [""], "backend cflib: one radio URI per drone, in the order of names"),
            "takeoff_s": declare(self, "takeoff_s", 3.0, "takeoff duration; the mission starts this long "
                                 "after the takeoff is answered, s", lo=0.1, hi=60.0),
            "land_s": declare(self, "land_s", 3.0, "landing duration, s", lo=0.1, hi=60.0),
            "land_height_m": declare(self, "land_height_m", 0.04, "height a landing ends at, m", lo=0.0, hi=0.5),
            "hover_after_s": declare(self, "hover_after_s", 0.25, "no safe command for this long: hold "
                                     "position, s", lo=0.01),
            "land_after_s": declare(self, "land_after_s", 1.5, "no safe command for this long: land, s", lo=0.02),
            "pose_hover_after_s": declare(self, "pose_hover_after_s", 0.5, "no pose for this long: hold "
                                          "position, s", lo=0.01),
            "pose_land_after_s": declare(self, "pose_land_after_s", 2.0, "no pose for this long: land, s",
                                         lo=0.02),
            "max_lead_m": declare(self, "max_lead_m", 0.3, "how far a setpoint may run ahead of the measured "
                                  "pose, m", lo=0.01),
            "service_timeout_s": declare(self, "service_timeout_s", 1.0, "a service call not answered within "
                                         "this has failed, s", lo=0.01),
            "service_attempts": declare(self, "service_attempts", 2, "tries per service call before the drone "
                                        "is given up (takeoff) or lands by a streamed descent (landing)",
                                        lo=1, hi=10),
            "service_retry_s": declare(self, "service_retry_s", 0.5, "pause before retrying a failed call, s",
                                       lo=0.01),
            "autostart": declare(self, "autostart", False, "take off once the drones' services are up"),
            "autostart_wait_s": declare(self, "autostart_wait_s", 30.0, "autostart: take off the drones whose "
                                        "services are up after this long, even if some are not, s", lo=0.0),
            "pose_from_tf": declare(self, "pose_from_tf", False, "backend crazyswarm2: read TF world -> "
                                    "{name} instead of {name}/pose (Crazyswarm2's simulator)"),
            "pose_log_period_ms": declare(self, "pose_log_period_ms", 20, "backend cflib: state-estimate log "
                                          "period, ms (a multiple of 10)", lo=10, hi=2540),
        }
        for hover, land in (("hover_after_s", "land_after_s"), ("pose_hover_after_s", "pose_land_after_s")):
            if not p[land] > p[hover]:
                raise StartupError(land, p[land], f"must be greater than {hover} = {p[hover]}")
        self.frame, self.names, self.r, self.p = ArenaFrame.from_scenario(scenario), names, scenario.n_resources, p
        self.flights = {n: DroneFlight(
            self.frame, scenario.dt, p["takeoff_s"], p["hover_after_s"], p["land_after_s"], p["max_lead_m"], name=n,
            land_s=p["land_s"], land_height_m=p["land_height_m"], pose_hover_after_s=p["pose_hover_after_s"],
            pose_land_after_s=p["pose_land_after_s"], call_timeout_s=p["service_timeout_s"],
            call_attempts=p["service_attempts"], retry_s=p["service_retry_s"], report=self._report)
            for n in names}
        self.source = pose_source(p["backend"], p["pose_from_tf"])
        if p["backend"] == "crazyswarm2":
            # streamed setpoints stay valid two ticks after the hand-over (Crazyswarm2's default 100 ms at 20 Hz)
            self.backend = Crazyswarm2Backend(self, names, self.frame.flight_height_m, p["takeoff_s"],
                                              p["land_height_m"], p["land_s"], max(1, round(2000 * scenario.dt)))
        else:
            self.backend = CflibBackend(names, [u for u in p["uris"] if u], self.frame, scenario.dt,
                                        self.frame.flight_height_m, p["takeoff_s"], p["land_s"],
                                        clock=lambda: now_s(self))
        self._pending: dict[str, tuple[ServiceCall, Future]] = {}
        self.stats = comm.DecodeStats()
        for name in names:
            f = self.flights[name]
            if self.source == "topic":
                self.create_subscription(PoseStamped, f"{name}/pose", guarded(self, lambda m, f=f: f.on_pose(
                    [m.pose.position.x, m.pose.position.y, m.pose.position.z], now_s(self))), TAKE_LATEST)
            self.create_subscription(TwistStamped, f"{name}/cmd_vel_safe", guarded(self, lambda m, f=f: f.on_command(
                stamp_s(m.header), [m.twist.linear.x, m.twist.linear.y])), TAKE_LATEST)
            self.create_subscription(Float64MultiArray, f"{name}/lgtc/supply",
                                     guarded(self, lambda m, f=f: self._on_supply(f, m)), TAKE_LATEST)
        self.pose_pubs = {} if self.source == "topic" else {
            n: self.create_publisher(PoseStamped, f"{n}/pose", LATEST) for n in names}
        self.tf = None
        if self.source == "tf":  # tf2_ros is not pip-installable: imported only where it is used
            try:
                from tf2_ros import Buffer, TransformListener
            except ImportError as exc:
                raise StartupError("pose_from_tf", True, f"tf2_ros is not importable ({exc}): source ROS 2, "
                                   "or read poses from the server's pose topic") from None
            self.tf = Buffer()
            self.tf_listener = TransformListener(self.tf, self)
        elif self.source == "link":
            # cflib calls back from its own thread: it stores the sample and triggers this guard
            # condition; the executor then publishes (rclpy entities are used from one thread only)
            self.pose_ready = self.create_guard_condition(guarded(self, self._publish_link_poses))
            try:
                self.backend.link.start_pose_logging(p["pose_log_period_ms"],
                                                     on_sample=lambda _: self.pose_ready.trigger())
            except (RuntimeError, ValueError) as exc:
                self.backend.close()
                raise StartupError("pose_log_period_ms", p["pose_log_period_ms"], str(exc)) from None
        self.create_service(Trigger, "lgtc/start", self._start)
        self.create_service(Trigger, "lgtc/land", self._land)
        self._autostart, self._first_tick = p["autostart"], None
        # the world's mission clock starts when the swarm is airborne (latched for late joiners)
        self.pub_airborne = self.create_publisher(Bool, "lgtc/airborne", LATCHED)
        self._announced = False
        self.create_timer(scenario.dt, guarded(self, self._tick))

    # ------------------------------------------------------------------ logging

    def _report(self, level: str, line: str) -> None:
        # one call site per severity: rclpy's logger refuses a call site that changes its severity
        log = self.get_logger()
        if level == "error":
            log.error(line)
        elif level == "warning":
            log.warning(line)
        else:
            log.info(line)

    # ------------------------------------------------------------------ poses

    def _publish_pose(self, name: str, xyz, stamp: Time, orientation=None) -> None:
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = stamp.to_msg(), FRAME_ID
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
        if orientation is not None:
            msg.pose.orientation = orientation
        self.pose_pubs[name].publish(msg)

    def _publish_link_poses(self) -> None:
        for name, sample in self.backend.link.take_poses().items():
            self.flights[name].on_pose(sample.position_m, sample.received_s)
            self._publish_pose(name, sample.position_m, Time(nanoseconds=round(sample.received_s * 1e9),
                                                             clock_type=self.get_clock().clock_type))

    def _poses_from_tf(self, now: float) -> None:
        from tf2_ros import TransformException

        for name in self.names:
            try:
                t = self.tf.lookup_transform(FRAME_ID, name, Time())
            except TransformException:
                continue  # not yet broadcast: the drone waits for its pose
            tr = t.transform.translation
            self.flights[name].on_pose([tr.x, tr.y, tr.z], now)
            self._publish_pose(name, [tr.x, tr.y, tr.z], Time.from_msg(t.header.stamp), t.transform.rotation)

    # ------------------------------------------------------------------ service calls

    def _send_calls(self, name: str) -> None:
        """Send the drone's next request(s): a synchronous backend answers at once, so the next one
        (land after notify_setpoints_stop) goes out in the same loop; an asynchronous one is chained
        on its future's done callback (run by the executor: nothing here waits)."""
        f = self.flights[name]
        while (call := f.pop_call(now_s(self))) is not None:
            try:
                future = self.backend.call(name, call.service)
            except ServiceUnavailable as exc:
                f.call_failed(call.id, now_s(self), str(exc), may_have_reached=False)
                continue
            except Exception as exc:  # the request could not be built or sent
                f.call_failed(call.id, now_s(self), f"{type(exc).__name__}: {exc}", may_have_reached=False)
                continue
            if future.done():
                self._settle(name, call, future)
            else:
                self._pending[name] = (call, future)
                future.add_done_callback(lambda fut, name=name, call=call: self._on_answer(name, call, fut))

    def _on_answer(self, name: str, call: ServiceCall, future: Future) -> None:
        if not self.context.ok():
            return
        if self._pending.get(name, (None,))[0] == call:
            del self._pending[name]
        self._settle(name, call, future)
        self._send_calls(name)  # the chain goes on now, not at the next tick

    def _settle(self, name: str, call: ServiceCall, future: Future) -> None:
        f = self.flights[name]
        if future.cancelled():
            f.call_failed(call.id, now_s(self), "cancelled")
        elif future.exception() is not None:
            exc = future.exception()
            f.call_failed(call.id, now_s(self), f"{type(exc).__name__}: {exc}")
        elif f.call_succeeded(call.id, now_s(self)):
            self.get_logger().info(f"{name}: {call.service} done")

    def _drop_timed_out(self, name: str) -> None:
        pending = self._pending.get(name)
        if pending is not None and self.flights[name].outstanding != pending[0]:
            del self._pending[name]  # the flight core gave up on it (timeout, or a landing superseded it)
            self.backend.forget(name, pending[0].service, pending[1])

    # ------------------------------------------------------------------ inputs and services

    def _on_supply(self, flight: DroneFlight, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self), 0.5, self.r, self.stats)
        if got is not None and not got.active:
            flight.land("the world grounded it: its supply is gone")

    def _start(self, request, response):
        ready = {n: self.backend.ready(n) for n in self.names}
        if not any(ready.values()):
            response.success, response.message = False, "no drone's services are available yet"
            return response
        for f in self.flights.values():
            f.start(now_s(self))
        missing = [n for n, ok in ready.items() if not ok]
        response.success = True
        response.message = f"taking off: {', '.join(self.names)}" + (
            f" ({', '.join(missing)}: services not available yet)" if missing else "")
        self.get_logger().info(response.message)
        return response

    def _land(self, request, response):
        for f in self.flights.values():
            f.land("lgtc/land")
        response.success, response.message = True, "landing"
        return response

    # ------------------------------------------------------------------ the tick

    def _tick(self) -> None:
        now = now_s(self)
        if self.tf is not None:
            self._poses_from_tf(now)
        if self._first_tick is None:  # the clock runs from here (sim time: from the first /clock)
            self._first_tick = now
        if self._autostart:
            ready = {n: self.backend.ready(n) for n in self.names}
            if autostart_due(ready, now - self._first_tick, self.p["autostart_wait_s"]):
                self._autostart = False
                self._start(None, Trigger.Response())
        for name, f in self.flights.items():
            cmd = f.update(now)
            self._drop_timed_out(name)
            self._send_calls(name)
            if cmd.kind == "setpoint":
                self.backend.send(name, cmd.setpoint)
        self._announce()

    def _announce(self) -> None:
        if self._announced:
            return
        outcome = takeoff_outcome({n: f.phase for n, f in self.flights.items()})
        if outcome is None:
            return
        self._announced = True
        flying, down = outcome
        if not flying:
            self.get_logger().error(f"no drone is airborne ({', '.join(down)} down): the mission does not start")
            return
        self.pub_airborne.publish(Bool(data=True))
        if down:
            self.get_logger().warning(f"airborne: {', '.join(flying)}; not flying: {', '.join(down)}: "
                                      "the mission starts without them")
        else:
            self.get_logger().info("every drone is airborne: the mission starts")

    def destroy_node(self):
        self.backend.close()
        return super().destroy_node()


def main(args=None) -> None:
    run(BridgeNode, "lgtc_bridge", args)


if __name__ == "__main__":
    main()
