"""From the swarm's safe velocity commands to Crazyflie setpoints, without ROS or cflib.

The policy and the CBF filter speak normalized arena units: positions in [-1, 1]^2, velocities
in arena units per second, one command per agent every ``dt`` seconds (20 Hz). A Crazyflie
wants metres, metres per second and an altitude. This module holds the pure numpy pieces in
between, so the same code serves the ROS node (Crazyswarm2), the direct radio backend
(`lgtc_ros.cflib_link`) and the tests:

* `lgtc_ros.frames.ArenaFrame` (its own module) maps arena units to metres and back.
* `FullStateSetpoint` is one position + velocity + acceleration + yaw setpoint in SI units
  (m, m/s, m/s^2, rad). It carries exactly what Crazyswarm2's ``cmd_full_state`` topic
  (``crazyflie_interfaces/msg/FullState``) and cflib's ``Commander.send_full_state_setpoint``
  take.
* `SetpointIntegrator` turns a velocity command into a full-state setpoint by integrating it
  on the host. Crazyswarm2's simulator implements only full-state streaming setpoints, so a
  velocity command cannot be forwarded as such; integrating here also lets us keep the
  setpoint close to the measured drone and inside the arena.
* `CommandWatchdog` decides what to do when the commands stop: hover, then land. The
  Crazyflie firmware has its own commander watchdog (it levels the drone after 0.5 s without
  setpoints and stops the motors after 2 s); ours fires earlier so the drone hovers and lands
  under control instead of reaching the firmware's last resort.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from lgtc_ros.frames import ArenaFrame, positive_finite

__all__ = [
    "CommandWatchdog",
    "FullStateSetpoint",
    "SetpointIntegrator",
    "WatchdogState",
]


def _vector3(name: str, value) -> np.ndarray:
    array = np.array(value, dtype=float).reshape(-1)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    # Setpoints get logged and re-sent (hover); a caller mutating its array must not change them.
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class FullStateSetpoint:
    """One full-state setpoint in the world frame: m, m/s, m/s^2 and yaw in radians."""

    position_m: np.ndarray
    velocity_m_s: np.ndarray
    acceleration_m_s2: np.ndarray
    yaw_rad: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _vector3("position_m", self.position_m))
        object.__setattr__(self, "velocity_m_s", _vector3("velocity_m_s", self.velocity_m_s))
        object.__setattr__(self, "acceleration_m_s2", _vector3("acceleration_m_s2", self.acceleration_m_s2))
        yaw = float(self.yaw_rad)
        if not math.isfinite(yaw):
            raise ValueError(f"yaw_rad must be finite, got {self.yaw_rad!r}")
        object.__setattr__(self, "yaw_rad", yaw)


class SetpointIntegrator:
    """Integrates one drone's arena velocity commands into full-state setpoints.

    The position setpoint advances by ``v * dt`` each step. Two clamps keep it sane:

    * lead clamp: with a measured position, the setpoint stays within ``max_lead_m``
      (horizontally) of it. Without this, a drone that lags (battery sag, a wall of air from a
      neighbour) or is pushed away would chase a setpoint running ever further ahead, and the
      position controller would answer the growing error with ever more aggressive attitude.
    * arena clamp: x, y stay inside the arena's metric box, and the velocity feed-forward along
      an axis pinned at a wall is zeroed when it points outward, so the drone is not told to
      keep moving into the net.

    A non-finite command (a NaN out of the policy) holds the position with zero velocity and is
    counted in ``nonfinite``; a non-finite measurement is ignored (no lead clamp that step) and
    counted in ``nonfinite_measurements``.
    """

    def __init__(self, frame: ArenaFrame, dt: float, max_lead_m: float = 0.3) -> None:
        self.frame = frame
        self.dt = positive_finite("dt", dt)
        self.max_lead_m = positive_finite("max_lead_m", max_lead_m)
        self.nonfinite = 0
        self.nonfinite_measurements = 0
        self._pos_xy: np.ndarray | None = None

    @property
    def position_m(self) -> np.ndarray | None:
        """The current position setpoint [x, y, z] in metres, or None before `reset`."""
        if self._pos_xy is None:
            return None
        return np.array([self._pos_xy[0], self._pos_xy[1], self.frame.flight_height_m])

    def reset(self, measured_pos_m) -> None:
        """Anchor the setpoint at a measured position ([x, y] or [x, y, z] m; z is ignored)."""
        measured = np.asarray(measured_pos_m, dtype=float).reshape(-1)
        if measured.shape not in ((2,), (3,)) or not np.all(np.isfinite(measured[:2])):
            raise ValueError(f"measured_pos_m must be finite [x, y] or [x, y, z] metres, got {measured_pos_m!r}")
        # A drone standing just outside the box still gets a setpoint inside it.
        self._pos_xy = np.clip(measured[:2], self.frame.lower_m, self.frame.upper_m)

    def step(self, v_arena, measured_pos_m=None) -> FullStateSetpoint:
        """Advance by one command ``v_arena`` ([2], arena units/s) and return the setpoint."""
        if self._pos_xy is None:
            raise RuntimeError("SetpointIntegrator.step() called before reset(measured_pos_m): "
                               "the setpoint must be anchored at the drone's measured position first")
        v = np.asarray(v_arena, dtype=float).reshape(-1)
        if v.shape != (2,):
            raise ValueError(f"v_arena must be [vx, vy] arena units/s, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            self.nonfinite += 1
            v = np.zeros(2)
        v_m = self.frame.velocity_to_metres(v)
        pos = self._pos_xy + v_m * self.dt

        if measured_pos_m is not None:
            measured = np.asarray(measured_pos_m, dtype=float).reshape(-1)[:2]
            if measured.shape == (2,) and np.all(np.isfinite(measured)):
                lead = pos - measured
                dist = float(np.hypot(lead[0], lead[1]))
                if dist > self.max_lead_m:
                    pos = measured + lead * (self.max_lead_m / dist)
            else:
                self.nonfinite_measurements += 1

        lower, upper = self.frame.lower_m, self.frame.upper_m
        clamped = np.clip(pos, lower, upper)
        outward = ((pos > upper) & (v_m > 0.0)) | ((pos < lower) & (v_m < 0.0))
        v_m = np.where(outward, 0.0, v_m)
        self._pos_xy = clamped

        return FullStateSetpoint(
            position_m=np.array([clamped[0], clamped[1], self.frame.flight_height_m]),
            velocity_m_s=np.array([v_m[0], v_m[1], 0.0]),
            acceleration_m_s2=np.zeros(3),
        )

    def hold(self, measured_pos_m=None) -> FullStateSetpoint:
        """The current setpoint with zero velocity (what a hovering drone is sent)."""
        return self.step(np.zeros(2), measured_pos_m)


class WatchdogState(enum.Enum):
    FLYING = "flying"
    """Commands are fresh: fly them."""
    HOVERING = "hovering"
    """Commands are late: hold the current setpoint with zero velocity."""
    LANDING = "landing"
    """Commands are gone: land. Latched until `CommandWatchdog.reset`."""


class CommandWatchdog:
    """Hover when velocity commands are late, land when they are gone.

    Times are seconds on any monotonic clock, as long as `reset`, `command` and `update` share
    it. The clock starts at the first `reset(now_s)` or `command(stamp_s)`. Until a command
    arrives after a reset, `update` times out as if the last command was at the reset time,
    except that it never says FLYING (there is nothing to fly): HOVERING, then LANDING once
    ``land_after_s`` has passed, so a controller that never comes up lands the drone.

    LANDING is latched: a drone whose controller was silent for ``land_after_s`` is not flown
    again by the next command that happens to arrive; it must be re-armed with `reset`. A gap
    of ``land_after_s`` between two commands latches too, even if `update` was not called in
    between (the loop calling it may have been starved as well).

    Any stream of stamped inputs can be watched this way: `flight.DroneFlight` runs a second one
    on the drone's poses (each pose a "command" stamped at receipt; 0.5 s / 2 s by default).
    """

    def __init__(self, hover_after_s: float = 0.25, land_after_s: float = 1.5) -> None:
        # Defaults sit under the Crazyflie firmware's commander watchdog, which levels the drone
        # after 0.5 s without setpoints and stops the motors after 2 s: we hover (5 missed 20 Hz
        # commands) before it levels, and start a controlled landing before it cuts the motors.
        hover_after_s = float(hover_after_s)
        land_after_s = float(land_after_s)
        if not (math.isfinite(hover_after_s) and math.isfinite(land_after_s) and 0.0 < hover_after_s < land_after_s):
            raise ValueError(f"need 0 < hover_after_s < land_after_s (finite), "
                             f"got hover_after_s={hover_after_s!r}, land_after_s={land_after_s!r}")
        self.hover_after_s = hover_after_s
        self.land_after_s = land_after_s
        self._last_s: float | None = None
        self._commanded = False
        self._latched = False
        self.state = WatchdogState.HOVERING

    def reset(self, now_s: float) -> None:
        """Re-arm: clear a latched landing and start the clock at ``now_s``."""
        self._last_s = self._check_time("now_s", now_s)
        self._commanded = False
        self._latched = False
        self.state = WatchdogState.HOVERING

    def command(self, stamp_s: float) -> None:
        """Record a command stamped ``stamp_s``. Stamps older than the newest command (or than the
        reset) are ignored."""
        stamp_s = self._check_time("stamp_s", stamp_s)
        if self._last_s is not None:
            if stamp_s < self._last_s:
                return  # reordered or from before the reset: says nothing about now
            if stamp_s - self._last_s >= self.land_after_s:
                self._latch()
        self._last_s = stamp_s
        self._commanded = True

    def update(self, now_s: float) -> WatchdogState:
        """The state at ``now_s``."""
        now_s = self._check_time("now_s", now_s)
        if self._last_s is None:
            raise RuntimeError("CommandWatchdog.update() called before reset(now_s) or command(stamp_s)")
        if self._latched:
            return self.state
        age = now_s - self._last_s
        if age < self.hover_after_s and self._commanded:
            self.state = WatchdogState.FLYING
        elif age < self.land_after_s:
            self.state = WatchdogState.HOVERING
        else:
            self._latch()
        return self.state

    def _latch(self) -> None:
        self._latched = True
        self.state = WatchdogState.LANDING

    @staticmethod
    def _check_time(name: str, value: float) -> float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return value
