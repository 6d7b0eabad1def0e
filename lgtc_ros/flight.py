"""One drone's flight between the swarm's commands and the vehicle, without ROS.

The bridge node (Crazyswarm2 or cflib) drives each drone through a `DroneFlight`:

  GROUND --start()--> TAKING_OFF --takeoff answered, takeoff_s later, fresh pose--> MISSION
  MISSION --land() / a watchdog / the world--> LANDING --land answered, land_s later--> DOWN
  TAKING_OFF --takeoff failed `call_attempts` times--> DOWN (no request reached a server) or LANDING

Two outputs, polled by the node:

* `update(now)` -> `FlightCommand`: the full-state setpoint to stream this tick, or none. In MISSION
  the newest safe velocity (m/s) is integrated into setpoints (`bridge.SetpointIntegrator`, anchored
  at the pose measured when the mission starts). Two watchdogs of the same kind
  (`bridge.CommandWatchdog`) watch the inputs: late commands hold position, silent commands land;
  a stale pose holds position without trusting the pose, a pose gone for `pose_land_after_s` lands.
* `pop_call(now)` -> `ServiceCall`: the next service request to send (takeoff, then on landing
  notify_setpoints_stop followed by land), one at a time, so land follows notify_setpoints_stop's
  answer. The node reports each outcome (`call_succeeded`, `call_failed`); a request unanswered
  after `call_timeout_s` has failed too. A failed request is retried `call_attempts` times in all,
  `retry_s` apart; then a takeoff gives the drone up (it lands if a request may have reached it),
  and a failed landing lands the drone by streaming a descent (the only way left that needs no
  service; streamed setpoints take priority over the high-level commander in the firmware).

Every decision is logged through `report(level, line)`, one line naming the drone.
"""
from __future__ import annotations

import enum
import itertools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from lgtc_ros.bridge import CommandWatchdog, FullStateSetpoint, SetpointIntegrator, WatchdogState
from lgtc_ros.frames import ArenaFrame

__all__ = ["DroneFlight", "FlightCommand", "NONE", "Phase", "ServiceCall", "SERVICES", "autostart_due",
           "pose_source", "takeoff_outcome"]

logger = logging.getLogger(__name__)

SERVICES = ("takeoff", "notify_setpoints_stop", "land")
"""The per-drone services the bridge calls (Crazyswarm2's names; the cflib link has one call for each)."""

_GROUND_MARGIN_M = 0.05
"""A drone within this of the landing height is on the ground: a streamed descent would lift it."""

_SETTLE_S = 0.5
"""A streamed descent holds its last setpoint this long before streaming stops."""


class Phase(enum.Enum):
    GROUND = "ground"
    TAKING_OFF = "taking_off"
    MISSION = "mission"
    LANDING = "landing"
    DOWN = "down"
    """On the ground for good: landed, or its takeoff never reached the drone."""


@dataclass(frozen=True)
class FlightCommand:
    """What to stream this tick: "setpoint" (with `setpoint`) or "none"."""

    kind: str
    setpoint: FullStateSetpoint | None = None


NONE = FlightCommand("none")


@dataclass(frozen=True)
class ServiceCall:
    """One request to send: `service` (one of `SERVICES`), attempt `attempt` of `attempts`. Report its
    outcome with its `id`: an answer to a request that has since timed out is ignored."""

    id: int
    service: str
    attempt: int
    attempts: int


def _default_report(level: str, line: str) -> None:
    logger.log(logging.getLevelName(level.upper()), line)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class DroneFlight:
    def __init__(self, frame: ArenaFrame, dt: float, takeoff_s: float = 3.0, hover_after_s: float = 0.25,
                 land_after_s: float = 1.5, max_lead_m: float = 0.3, *, name: str = "drone",
                 land_s: float = 3.0, land_height_m: float = 0.04, pose_hover_after_s: float = 0.5,
                 pose_land_after_s: float = 2.0, call_timeout_s: float = 1.0, call_attempts: int = 2,
                 retry_s: float = 0.5, report: Callable[[str, str], None] | None = None):
        self.frame, self.name = frame, name
        self.takeoff_s = _positive("takeoff_s", takeoff_s)
        self.land_s = _positive("land_s", land_s)
        self.land_height_m = float(land_height_m)
        self.call_timeout_s = _positive("call_timeout_s", call_timeout_s)
        self.retry_s = _positive("retry_s", retry_s)
        if int(call_attempts) < 1:
            raise ValueError(f"call_attempts must be >= 1, got {call_attempts}")
        self.call_attempts = int(call_attempts)
        self.integrator = SetpointIntegrator(frame, dt, max_lead_m)
        self.watchdog = CommandWatchdog(hover_after_s, land_after_s)
        # The pose watchdog is the command watchdog's twin: each pose is a "command" stamped at receipt.
        self.pose_watchdog = CommandWatchdog(pose_hover_after_s, pose_land_after_s)
        self.report = report or _default_report
        self.phase = Phase.GROUND
        self._pose: np.ndarray | None = None
        self._pose_at: float | None = None
        self._v_m_s = np.zeros(2)
        self._started_at = 0.0
        self._airborne_at: float | None = None
        self._down_at: float | None = None
        self._streamed = False
        self._hovering = ""
        self._descent: tuple[float, np.ndarray] | None = None
        # service requests: the queue's head is the service being tried
        self._queue: list[str] = []
        self._attempt = 0
        self._outstanding: ServiceCall | None = None
        self._deadline = 0.0
        self._not_before = -math.inf
        self._may_have_reached = False
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ inputs

    @property
    def last_pose(self) -> tuple[np.ndarray, float] | None:
        """The newest measured position (m) and when it was received, or None before the first."""
        return None if self._pose is None else (self._pose.copy(), self._pose_at)

    def on_pose(self, position_m, stamp_s: float) -> None:
        """A measured position (m, world frame) received at `stamp_s` (the clock `update` runs on)."""
        p = np.asarray(position_m, dtype=np.float64).reshape(-1)
        if p.shape != (3,) or not np.isfinite(p).all() or not math.isfinite(stamp_s):
            return
        if self._pose_at is not None and stamp_s < self._pose_at:
            return  # reordered: says nothing about now
        self._pose, self._pose_at = p, float(stamp_s)
        if self.phase is Phase.MISSION:
            self.pose_watchdog.command(stamp_s)

    def on_command(self, stamp_s: float, v_m_s) -> None:
        """A safe velocity command (m/s, world frame, x and y) stamped `stamp_s`."""
        v = np.asarray(v_m_s, dtype=np.float64).reshape(-1)[:2]
        if self.phase is Phase.MISSION and np.isfinite(v).all():
            self._v_m_s = v
            self.watchdog.command(stamp_s)

    def start(self, now: float) -> None:
        """Take off (from GROUND only); the mission starts `takeoff_s` after the takeoff is answered."""
        if self.phase is Phase.GROUND:
            self.phase, self._started_at, self._airborne_at = Phase.TAKING_OFF, float(now), None
            self._queue, self._attempt, self._not_before = ["takeoff"], 0, -math.inf
            self._may_have_reached = False

    def land(self, reason: str = "requested") -> None:
        """Land now (from TAKING_OFF or MISSION). A drone that streamed setpoints first hands over to the
        high-level commander (notify_setpoints_stop), then lands; a pending takeoff request is dropped,
        and a drone no takeoff request can have reached (none sent, or none available) stays down."""
        if self.phase not in (Phase.TAKING_OFF, Phase.MISSION):
            return
        risen = self._airborne_at is not None or self._outstanding is not None or self._may_have_reached
        if self.phase is Phase.TAKING_OFF and not risen:  # no takeoff request reached it: nothing to land
            self.phase, self._queue, self._outstanding = Phase.DOWN, [], None
            self.report("info", f"{self.name}: stays on the ground ({reason}; no takeoff request reached it)")
            return
        self.phase = Phase.LANDING
        self._queue = ["notify_setpoints_stop", "land"] if self._streamed else ["land"]
        self._attempt, self._outstanding, self._not_before = 0, None, -math.inf
        self.report("info", f"{self.name}: landing ({reason})")

    # ------------------------------------------------------------------ service requests

    @property
    def outstanding(self) -> ServiceCall | None:
        """The request sent and not yet answered, failed or timed out."""
        return self._outstanding

    def pop_call(self, now: float) -> ServiceCall | None:
        """The request to send now, if any (none while one is outstanding or a retry is not yet due)."""
        self._check_timeout(now)
        if self._outstanding is not None or not self._queue or now < self._not_before:
            return None
        self._attempt += 1
        self._outstanding = ServiceCall(next(self._ids), self._queue[0], self._attempt, self.call_attempts)
        self._deadline = now + self.call_timeout_s
        return self._outstanding

    def call_succeeded(self, call_id: int, now: float) -> bool:
        """Request `call_id` was answered; False if it no longer counts (it had timed out, or a landing
        superseded it)."""
        if self._outstanding is None or self._outstanding.id != call_id:
            return False
        service = self._queue.pop(0)
        self._outstanding, self._attempt = None, 0
        if service == "takeoff" and self.phase is Phase.TAKING_OFF:
            self._airborne_at = now + self.takeoff_s
        elif service == "land" and self.phase is Phase.LANDING:
            self._down_at = now + self.land_s
        return True

    def call_failed(self, call_id: int, now: float, reason: str, may_have_reached: bool = True) -> bool:
        """Request `call_id` failed: `reason` says how (one phrase). `may_have_reached`: False when the
        request never left the bridge (service not available), so the drone cannot have acted on it.
        False if the request no longer counts."""
        if self._outstanding is None or self._outstanding.id != call_id:
            return False
        call, self._outstanding = self._outstanding, None
        self._may_have_reached |= may_have_reached
        line = f"{self.name}: {call.service} failed: {reason} (attempt {call.attempt} of {call.attempts})"
        if call.attempt < call.attempts:
            self._not_before = now + self.retry_s
            self.report("warning", f"{line}; retrying in {self.retry_s:g} s")
            return True
        self._queue.pop(0)
        self._attempt = 0
        if call.service == "takeoff":
            if self._may_have_reached:
                self.report("error", f"{line}; {self.name} does not fly this mission and lands in case it rose")
                self.land("its takeoff failed")
            else:
                self.report("error", f"{line}; {self.name} stays on the ground and does not fly this mission")
                self.phase = Phase.DOWN
        else:
            self._queue = []
            self.report("error", f"{line}; landing {self.name} by streaming a descent")
            self._start_descent(now)
        return True

    def _check_timeout(self, now: float) -> None:
        if self._outstanding is not None and now >= self._deadline:
            self.call_failed(self._outstanding.id, now, f"no response within {self.call_timeout_s:g} s")

    # ------------------------------------------------------------------ streaming

    def update(self, now: float) -> FlightCommand:
        """What to stream now (and every phase change that time alone makes)."""
        self._check_timeout(now)
        if self.phase is Phase.TAKING_OFF and self._airborne_at is not None and now >= self._airborne_at:
            self._begin_mission(now)
        if self.phase is Phase.LANDING:
            return self._landing(now)
        if self.phase is not Phase.MISSION:
            return NONE
        commands, pose = self.watchdog.update(now), self.pose_watchdog.update(now)
        if pose is WatchdogState.LANDING:
            self.land(f"no pose for {self.pose_watchdog.land_after_s:g} s")
            return NONE
        if commands is WatchdogState.LANDING:
            self.land(f"no safe command for {self.watchdog.land_after_s:g} s")
            return NONE
        self._streamed = True
        if pose is WatchdogState.HOVERING:  # the pose is stale: hold, and do not clamp to it
            self._note_hover("warning", f"no pose for {self.pose_watchdog.hover_after_s:g} s")
            return FlightCommand("setpoint", self.integrator.hold(None))
        if commands is WatchdogState.HOVERING:
            self._note_hover("info", f"no safe command for {self.watchdog.hover_after_s:g} s")
            return FlightCommand("setpoint", self.integrator.hold(self._pose))
        self._hovering = ""
        return FlightCommand("setpoint", self.integrator.step(self.frame.velocity_to_arena(self._v_m_s), self._pose))

    def _note_hover(self, level: str, reason: str) -> None:
        if self._hovering != reason:  # once per cause, not every tick
            self._hovering = reason
            self.report(level, f"{self.name}: hovering ({reason})")

    def _begin_mission(self, now: float) -> None:
        age = now - (self._pose_at if self._pose_at is not None else self._started_at)
        if self._pose is not None and age < self.pose_watchdog.hover_after_s:
            self.integrator.reset(self._pose)
            self.watchdog.reset(now)
            self.watchdog.command(now)  # the mission starts hovering in place, not counting as stale
            self.pose_watchdog.reset(self._pose_at)  # its clock runs from the pose the mission starts at
            self.pose_watchdog.command(self._pose_at)
            self._v_m_s = np.zeros(2)
            self.phase = Phase.MISSION
        elif age >= self.pose_watchdog.land_after_s:  # nothing to anchor the setpoints at: not safe to stream
            self.land(f"no pose for {self.pose_watchdog.land_after_s:g} s after its takeoff")
        # else: the high-level commander holds the drone at takeoff height while a pose is awaited

    def _landing(self, now: float) -> FlightCommand:
        if self._down_at is not None and now >= self._down_at:
            self.phase = Phase.DOWN
            return NONE
        if self._descent is None:
            return NONE
        t0, start = self._descent
        t = now - t0
        if t >= self.land_s + _SETTLE_S:
            self._descent, self.phase = None, Phase.DOWN
            return NONE
        frac = min(t / self.land_s, 1.0)
        z = start[2] + (self.land_height_m - start[2]) * frac
        vz = (self.land_height_m - start[2]) / self.land_s if frac < 1.0 else 0.0
        return FlightCommand("setpoint", FullStateSetpoint([start[0], start[1], z], [0.0, 0.0, vz], np.zeros(3)))

    def _start_descent(self, now: float) -> None:
        fresh = self._pose is not None and now - self._pose_at < self.pose_watchdog.hover_after_s
        if fresh:
            start = self._pose.copy()
            if self.integrator.position_m is not None:  # where it was being held, at the measured height
                start[:2] = self.integrator.position_m[:2]
        elif self.integrator.position_m is not None:
            start = self.integrator.position_m.copy()
        else:
            self.report("error", f"{self.name}: no pose and no setpoint to start a descent from: "
                                 "left to the firmware's own watchdog")
            return
        if start[2] <= self.land_height_m + _GROUND_MARGIN_M:
            self.phase = Phase.DOWN  # already down: a descent would lift it
            return
        self._descent = (now, start)


# ---------------------------------------------------------------- decisions for the whole swarm

def takeoff_outcome(phases: Mapping[str, Phase]) -> tuple[list[str], list[str]] | None:
    """None while a drone waits on the ground or takes off; then (drones flying the mission, the others).

    The world starts the mission clock on `lgtc/airborne`: the bridge sends it once this is not None
    and at least one drone flies. A drone whose takeoff failed is among the others (down, or landing
    in case it rose) and never joins: the mission goes on without it."""
    if any(p in (Phase.GROUND, Phase.TAKING_OFF) for p in phases.values()):
        return None
    flying = [n for n, p in phases.items() if p is Phase.MISSION]
    return flying, [n for n in phases if n not in flying]


def autostart_due(ready: Mapping[str, bool], waited_s: float, wait_s: float) -> bool:
    """Take off when every drone's services are up, or after `wait_s` when some are (the others fail
    their takeoff as "not available" and stay down); never with none up."""
    return any(ready.values()) and (all(ready.values()) or waited_s >= wait_s)


def pose_source(backend: str, pose_from_tf: bool) -> str:
    """Where the bridge reads each drone's pose:

    * "link": backend cflib, the Crazyflie's own state estimate logged over the radio
      (`cflib_link.CflibSwarmLink.start_pose_logging`); the bridge publishes it as `{name}/pose`.
    * "tf": Crazyswarm2 without a pose topic (its simulator publishes TF `world -> {name}` only);
      the bridge looks the transform up and publishes it as `{name}/pose`.
    * "topic": Crazyswarm2's server publishes `{name}/pose` (hardware, pose logging on): subscribe."""
    if backend == "cflib":
        return "link"
    if backend == "crazyswarm2":
        return "tf" if pose_from_tf else "topic"
    raise ValueError(f"backend = {backend!r}: must be crazyswarm2 or cflib")
