"""One drone's flight phases between the swarm's commands and the vehicle, without ROS.

The bridge node (Crazyswarm2) and the cflib backend both drive a drone through
`DroneFlight.update(now)`, which says what to send this tick:

  GROUND --start()--> TAKING_OFF --takeoff_s--> MISSION --land() / watchdog / world--> LANDING

In MISSION the newest safe velocity (m/s) is integrated into full-state setpoints
(`bridge.SetpointIntegrator`, anchored at the pose measured when the mission starts); when
commands stop the `bridge.CommandWatchdog` holds position, then lands the drone. A drone the world
reports as landed (its battery is gone, Fig. 5) is landed too.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from lgtc_ros.frames import ArenaFrame
from lgtc_ros.bridge import CommandWatchdog, FullStateSetpoint, SetpointIntegrator, WatchdogState


class Phase(enum.Enum):
    GROUND = "ground"
    TAKING_OFF = "taking_off"
    MISSION = "mission"
    LANDING = "landing"


@dataclass(frozen=True)
class FlightCommand:
    """What to send this tick: "takeoff", "land", "setpoint" (with `setpoint`) or "none"."""

    kind: str
    setpoint: FullStateSetpoint | None = None


NONE = FlightCommand("none")


class DroneFlight:
    def __init__(self, frame: ArenaFrame, dt: float, takeoff_s: float = 3.0, hover_after_s: float = 0.25,
                 land_after_s: float = 1.5, max_lead_m: float = 0.3):
        if not takeoff_s > 0:
            raise ValueError(f"takeoff_s must be > 0, got {takeoff_s}")
        self.frame, self.takeoff_s = frame, float(takeoff_s)
        self.integrator = SetpointIntegrator(frame, dt, max_lead_m)
        self.watchdog = CommandWatchdog(hover_after_s, land_after_s)
        self.phase = Phase.GROUND
        self._pose: np.ndarray | None = None
        self._v_m_s = np.zeros(2)
        self._airborne_at = 0.0
        self._pending: FlightCommand | None = None

    def on_pose(self, position_m) -> None:
        p = np.asarray(position_m, dtype=np.float64)
        if np.isfinite(p).all():
            self._pose = p

    def on_command(self, stamp_s: float, v_m_s) -> None:
        """A safe velocity command (m/s, world frame, x and y) stamped `stamp_s`."""
        v = np.asarray(v_m_s, dtype=np.float64).reshape(-1)[:2]
        if self.phase is Phase.MISSION and np.isfinite(v).all():
            self._v_m_s = v
            self.watchdog.command(stamp_s)

    def start(self, now: float) -> None:
        """Take off (from GROUND only); the mission starts `takeoff_s` later."""
        if self.phase is Phase.GROUND:
            self.phase, self._airborne_at = Phase.TAKING_OFF, now + self.takeoff_s
            self._pending = FlightCommand("takeoff")

    def land(self) -> None:
        """Land now (from any airborne phase)."""
        if self.phase in (Phase.TAKING_OFF, Phase.MISSION):
            self.phase, self._pending = Phase.LANDING, FlightCommand("land")

    def update(self, now: float) -> FlightCommand:
        if self._pending is not None:
            cmd, self._pending = self._pending, None
            return cmd
        if self.phase is Phase.TAKING_OFF and now >= self._airborne_at:
            if self._pose is None:  # no pose to anchor the setpoints at: not safe to stream
                self.land()
                return self.update(now)
            self.integrator.reset(self._pose)
            self.watchdog.reset(now)
            self.watchdog.command(now)  # the mission starts hovering in place, not counting as stale
            self._v_m_s = np.zeros(2)
            self.phase = Phase.MISSION
        if self.phase is not Phase.MISSION:
            return NONE
        state = self.watchdog.update(now)
        if state is WatchdogState.LANDING:
            self.land()
            return self.update(now)
        if state is WatchdogState.HOVERING:
            return FlightCommand("setpoint", self.integrator.hold(self._pose))
        return FlightCommand("setpoint", self.integrator.step(self.frame.velocity_to_arena(self._v_m_s), self._pose))
