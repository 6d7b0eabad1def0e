"""Direct Crazyflie radio links through cflib, for flying without ROS / Crazyswarm2.

One `CflibSwarmLink` owns one ``SyncCrazyflie`` per drone and uses these cflib calls
(cflib 0.1.34 signatures):

* ``cflib.crtp.init_drivers()`` once per process: it registers the link drivers in a global
  list, so calling it again would register them twice.
* ``SyncCrazyflie(link_uri, cf=Crazyflie(rw_cache=...))``, ``.open_link()`` and
  ``.close_link()``: blocking connect / disconnect. The rw cache keeps the log and parameter
  TOCs on disk so reconnecting a swarm does not download them again over the radio.
* ``cf.high_level_commander.takeoff(absolute_height_m, duration_s)`` and
  ``cf.high_level_commander.land(absolute_height_m, duration_s)``: the firmware plans these
  trajectories on board, so they survive a lossy radio better than streamed setpoints.
* ``cf.commander.send_full_state_setpoint(pos, vel, acc, orientation, rollrate, pitchrate,
  yawrate)``: the streamed low-level setpoint (m, m/s, m/s^2, quaternion [qx, qy, qz, qw],
  deg/s); `lgtc_ros.bridge.SetpointIntegrator` produces them from velocity commands.
* ``cf.commander.send_notify_setpoint_stop(remain_valid_milliseconds)``: streamed low-level
  setpoints take priority over the high-level commander in the firmware, so once a drone has
  been streamed to, takeoff/land commands are ignored until this is sent. `takeoff` and `land`
  send it themselves for drones that were streaming; `stop` sends it explicitly.

Stream at a steady rate (20 Hz here): the firmware's commander watchdog levels a drone after
0.5 s without setpoints and stops its motors after 2 s. Pair this with
`lgtc_ros.bridge.CommandWatchdog` to hover and land before that happens.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    import cflib.crtp
    from cflib.crazyflie import Crazyflie
    from cflib.crazyflie.syncCrazyflie import SyncCrazyflie
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lgtc_ros.cflib_link needs the Crazyflie Python library: pip install cflib") from exc

from lgtc_ros.frames import ArenaFrame
from lgtc_ros.bridge import FullStateSetpoint

__all__ = ["CflibSwarmLink", "DEFAULT_RW_CACHE", "default_cf_factory", "yaw_to_quaternion"]

logger = logging.getLogger(__name__)

DEFAULT_RW_CACHE = str(Path.home() / ".cache" / "lgtc_ros" / "cflib")
"""Where the default factory lets cflib cache log/parameter TOCs."""

# The firmware packs full-state vectors as int16 millimetres (per second, per second^2).
_INT16_MM_LIMIT = 32.767

_drivers_initialised = False


def _init_drivers_once() -> None:
    global _drivers_initialised
    if not _drivers_initialised:
        # Looked up on the module at call time so tests can monkeypatch cflib.crtp.init_drivers.
        cflib.crtp.init_drivers()
        _drivers_initialised = True


def default_cf_factory(uri: str) -> SyncCrazyflie:
    """A real, not yet connected ``SyncCrazyflie`` for ``uri`` with an on-disk TOC cache."""
    return SyncCrazyflie(uri, cf=Crazyflie(rw_cache=DEFAULT_RW_CACHE))


def yaw_to_quaternion(yaw_rad: float) -> tuple[float, float, float, float]:
    """Yaw about world z -> unit quaternion in cflib's order [qx, qy, qz, qw]."""
    half = 0.5 * float(yaw_rad)
    return (0.0, 0.0, math.sin(half), math.cos(half))


class CflibSwarmLink:
    """Radio links to a named set of Crazyflies.

    ``uris`` maps drone names ("cf1", ...) to radio URIs ("radio://0/80/2M/E7E7E7E701").
    ``frame`` is the arena the setpoints live in and ``dt`` the streaming period (s); the
    latter sets how long the last streamed setpoint stays valid after `stop` (two periods,
    100 ms at 20 Hz, the default of Crazyswarm2's
    ``notifySetpointsStop(remainValidMillisecs=100)``) so the drone is not leveled
    in the gap before the high-level command arrives. ``cf_factory(uri)`` returns an object
    with the ``SyncCrazyflie`` interface (``open_link``, ``close_link``, ``.cf.commander``,
    ``.cf.high_level_commander``); it defaults to a real one.
    """

    def __init__(
        self,
        uris: dict[str, str],
        frame: ArenaFrame,
        dt: float = 0.05,
        cf_factory: Callable[[str], Any] | None = None,
    ) -> None:
        if not uris:
            raise ValueError("uris must name at least one drone, e.g. {'cf1': 'radio://0/80/2M/E7E7E7E701'}")
        dt = float(dt)
        if not math.isfinite(dt) or dt <= 0.0:
            raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
        self.uris = dict(uris)
        self.frame = frame
        self.dt = dt
        self.remain_valid_ms = max(1, int(round(2000.0 * dt)))
        self._cf_factory = cf_factory if cf_factory is not None else default_cf_factory
        self._links: dict[str, Any] = {}
        self._last: dict[str, FullStateSetpoint] = {}
        self._streaming: set[str] = set()

    @property
    def names(self) -> list[str]:
        return list(self.uris)

    @property
    def connected(self) -> bool:
        return bool(self._links)

    # ------------------------------------------------------------------ connection

    def connect(self) -> None:
        """Open every link, in the order of ``uris``. All or nothing: on a failure the links
        already open are closed and a ``ConnectionError`` names the drone and its URI."""
        if self._links:
            raise RuntimeError("CflibSwarmLink is already connected; close() it first")
        _init_drivers_once()
        for name, uri in self.uris.items():
            try:
                scf = self._cf_factory(uri)
                scf.open_link()
            except Exception as exc:
                self.close()
                raise ConnectionError(f"could not open the link to {name} at {uri}: {exc}") from exc
            self._links[name] = scf
            logger.info("connected to %s at %s", name, uri)

    def close(self) -> None:
        """Close every open link; keeps going past a failing one and re-raises the first error."""
        first_error: Exception | None = None
        for name, scf in list(self._links.items()):
            try:
                scf.close_link()
            except Exception as exc:  # one bad link must not keep the others open
                logger.error("closing the link to %s failed: %s", name, exc)
                first_error = first_error or exc
        self._links.clear()
        self._streaming.clear()
        self._last.clear()
        if first_error is not None:
            raise first_error

    def __enter__(self) -> CflibSwarmLink:
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # ------------------------------------------------------------------ high level

    def takeoff(self, height_m: float, duration_s: float, name: str | None = None) -> None:
        """All drones (or drone ``name``) climb vertically to ``height_m`` (absolute) in ``duration_s``."""
        height_m = self._positive("height_m", height_m)
        duration_s = self._positive("duration_s", duration_s)
        for n in self.uris if name is None else [name]:
            self._hand_over(n)
            self._scf(n).cf.high_level_commander.takeoff(height_m, duration_s)

    def land(self, duration_s: float, name: str | None = None) -> None:
        """All drones (or drone ``name``: one whose battery is gone) descend to the ground in ``duration_s``."""
        duration_s = self._positive("duration_s", duration_s)
        for n in self.uris if name is None else [name]:
            self._hand_over(n)
            self._scf(n).cf.high_level_commander.land(0.0, duration_s)

    def stop(self, name: str | None = None) -> None:
        """End low-level streaming (one drone, or all) so the high-level commander can take over."""
        for n in self.uris if name is None else [name]:
            self._scf(n).cf.commander.send_notify_setpoint_stop(self.remain_valid_ms)
            self._streaming.discard(n)

    # ------------------------------------------------------------------ streaming

    def send(self, name: str, setpoint: FullStateSetpoint) -> None:
        """Stream one full-state setpoint to drone ``name``."""
        scf = self._scf(name)
        pos = self._mm_range("position_m", setpoint.position_m)
        vel = self._mm_range("velocity_m_s", setpoint.velocity_m_s)
        acc = self._mm_range("acceleration_m_s2", setpoint.acceleration_m_s2)
        scf.cf.commander.send_full_state_setpoint(pos, vel, acc, yaw_to_quaternion(setpoint.yaw_rad), 0.0, 0.0, 0.0)
        self._last[name] = setpoint
        self._streaming.add(name)

    def hover(self, name: str) -> None:
        """Re-send the last position sent to ``name`` with zero velocity and acceleration."""
        self._scf(name)
        last = self._last.get(name)
        if last is None:
            raise RuntimeError(f"hover({name!r}): no setpoint has been sent to {name} yet, so there is no position to hold")
        self.send(name, FullStateSetpoint(last.position_m, np.zeros(3), np.zeros(3), last.yaw_rad))

    # ------------------------------------------------------------------ helpers

    def _scf(self, name: str):
        if name not in self.uris:
            raise KeyError(f"unknown drone {name!r}; known drones: {', '.join(self.uris)}")
        scf = self._links.get(name)
        if scf is None:
            raise RuntimeError(f"no open link to {name}; call connect() first")
        return scf

    def _hand_over(self, name: str) -> None:
        if name in self._streaming:
            self.stop(name)

    @staticmethod
    def _positive(name: str, value: float) -> float:
        value = float(value)
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        return value

    @staticmethod
    def _mm_range(name: str, vec: np.ndarray) -> tuple[float, float, float]:
        # cflib would fail deep inside struct.pack with an unhelpful message.
        if np.any(np.abs(vec) > _INT16_MM_LIMIT):
            raise ValueError(f"{name} {vec.tolist()} exceeds the full-state packet range of +-{_INT16_MM_LIMIT}")
        return (float(vec[0]), float(vec[1]), float(vec[2]))
