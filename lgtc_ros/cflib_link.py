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
* ``LogConfig(name, period_in_ms)``, ``.add_variable('stateEstimate.x', 'float')``,
  ``cf.log.add_config(conf)`` (checks the variables against the log TOC downloaded on connect;
  sets ``conf.valid``, and only logs an error when the link is down), ``conf.data_received_cb``
  (called as ``cb(timestamp_ms, {name: value}, conf)`` from cflib's packet thread), ``conf.start()``,
  ``conf.stop()``, ``conf.delete()``: the same calls as cflib's own ``SyncLogger``, without its
  blocking queue. `start_pose_logging` streams each drone's state estimate this way; the callback
  thread only stores the newest sample under a lock (`take_poses` hands them over) and pokes the
  caller (the bridge node triggers a guard condition, so its executor publishes the pose).

Stream at a steady rate (20 Hz here): the firmware's commander watchdog levels a drone after
0.5 s without setpoints and stops its motors after 2 s. Pair this with
`lgtc_ros.bridge.CommandWatchdog` to hover and land before that happens.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import cflib.crtp
    from cflib.crazyflie import Crazyflie
    from cflib.crazyflie.log import LogConfig
    from cflib.crazyflie.syncCrazyflie import SyncCrazyflie
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lgtc_ros.cflib_link needs the Crazyflie Python library: pip install cflib") from exc

from lgtc_ros.frames import ArenaFrame
from lgtc_ros.bridge import FullStateSetpoint

__all__ = ["CflibSwarmLink", "DEFAULT_RW_CACHE", "POSE_VARIABLES", "PoseSample", "default_cf_factory",
           "yaw_to_quaternion"]

logger = logging.getLogger(__name__)

DEFAULT_RW_CACHE = str(Path.home() / ".cache" / "lgtc_ros" / "cflib")
"""Where the default factory lets cflib cache log/parameter TOCs."""

# The firmware packs full-state vectors as int16 millimetres (per second, per second^2).
_INT16_MM_LIMIT = 32.767

_drivers_initialised = False

POSE_VARIABLES = ("stateEstimate.x", "stateEstimate.y", "stateEstimate.z")
"""The firmware's state estimate (m, world frame): what Crazyswarm2 logs for its own /{name}/pose."""


@dataclass(frozen=True)
class PoseSample:
    """One logged position: metres (world frame), the caller's clock at receipt (s), the
    Crazyflie's own clock (ms, 24 bits)."""

    position_m: tuple[float, float, float]
    received_s: float
    timestamp_ms: int


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
    ``.cf.high_level_commander``, ``.cf.log``); it defaults to a real one. ``clock()`` stamps
    logged poses at receipt (seconds; the bridge passes its node's clock).
    """

    def __init__(
        self,
        uris: dict[str, str],
        frame: ArenaFrame,
        dt: float = 0.05,
        cf_factory: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._clock = clock
        self._pose_lock = threading.Lock()
        self._poses: dict[str, PoseSample] = {}
        self._log_configs: dict[str, tuple[Any, Callable]] = {}
        self._on_sample: Callable[[str], None] | None = None

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
        try:
            self.stop_pose_logging()
        except Exception as exc:  # closing the links matters more
            logger.error("stopping the pose logs failed: %s", exc)
            first_error = exc
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

    # ------------------------------------------------------------------ pose logging

    def start_pose_logging(self, period_ms: int = 20, on_sample: Callable[[str], None] | None = None) -> None:
        """Log every drone's state estimate (`POSE_VARIABLES`) every ``period_ms`` (a multiple of
        10 ms, the firmware's unit; 20 ms = 50 Hz, above the mission's 20 Hz). ``on_sample(name)`` is
        called from cflib's thread after each sample is stored: it must only hand over (it must not
        touch ROS or block). Raises with the drone's name if a drone does not accept the block."""
        period_ms = int(period_ms)
        if period_ms % 10 or not 10 <= period_ms <= 2540:
            raise ValueError(f"period_ms must be a multiple of 10 in 10..2540 (the firmware's 10 ms units), "
                             f"got {period_ms}")
        if self._log_configs:
            raise RuntimeError("pose logging is already running; stop_pose_logging() first")
        self._on_sample = on_sample
        for name in self.uris:
            scf = self._scf(name)
            conf = LogConfig(name=f"lgtc_pose_{name}", period_in_ms=period_ms)
            for var in POSE_VARIABLES:
                conf.add_variable(var, "float")
            try:
                scf.cf.log.add_config(conf)
            except (KeyError, AttributeError) as exc:  # not in the TOC / too large or bad period
                self.stop_pose_logging()
                raise RuntimeError(f"{name}: the state-estimate log block was refused: {exc}") from exc
            if not conf.valid:  # add_config only logs when the link is down
                self.stop_pose_logging()
                raise RuntimeError(f"{name}: the state-estimate log block was refused (is the link up?)")
            callback = lambda ts, data, _conf, name=name: self._on_pose_log(name, ts, data)  # noqa: E731
            conf.data_received_cb.add_callback(callback)
            self._log_configs[name] = (conf, callback)
            conf.start()

    def stop_pose_logging(self) -> None:
        """Stop and delete the pose log blocks (the drones keep no block behind)."""
        self._on_sample = None  # first: a sample arriving meanwhile pokes nobody
        for conf, callback in self._log_configs.values():
            conf.data_received_cb.remove_callback(callback)
            conf.stop()
            conf.delete()
        self._log_configs.clear()

    def take_poses(self) -> dict[str, PoseSample]:
        """The newest sample of each drone that logged since the last call (thread-safe)."""
        with self._pose_lock:
            poses, self._poses = self._poses, {}
        return poses

    def _on_pose_log(self, name: str, timestamp_ms: int, data: dict) -> None:
        # cflib's packet thread: store and poke, nothing else
        sample = PoseSample(tuple(float(data[v]) for v in POSE_VARIABLES), float(self._clock()), int(timestamp_ms))
        with self._pose_lock:
            self._poses[name] = sample
        poke = self._on_sample
        if poke is not None:
            poke(name)

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
