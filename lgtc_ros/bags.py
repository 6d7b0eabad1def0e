"""Record and read LGTC missions as real rosbag2 folders (metadata.yaml + .mcap), without ROS.

Uses the pure-Python `rosbags` library: CDR serialization through the ROS 2 Jazzy typestore and
the MCAP storage plugin, so ``ros2 bag info`` / ``ros2 bag play`` read the result directly.

Topics (all in `topics`, the one place the names live; ``{name}`` is ``cf1``, ``cf2``...):

=======================  ==============================  ==================================
topic                    type                            contents
=======================  ==============================  ==================================
/{name}/pose             geometry_msgs/msg/PoseStamped   frame "world", metres: xy =
                                                         normalized * arena_size_m / 2,
                                                         z = altitude_m (0 when landed)
/{name}/cmd_vel_nominal  geometry_msgs/msg/TwistStamped  frame "world", m/s, policy output
/{name}/cmd_vel_safe     geometry_msgs/msg/TwistStamped  frame "world", m/s, after the filter
/{name}/lgtc/message     std_msgs/msg/Float64MultiArray  comm ``lgtc_neighbour/v1``
/{name}/lgtc/state       std_msgs/msg/Float64MultiArray  comm ``lgtc_state/v1``
/lgtc/demands            std_msgs/msg/Float64MultiArray  comm ``lgtc_demands/v1``
/lgtc/reward_terms       std_msgs/msg/Float64MultiArray  comm ``lgtc_reward_terms/v1`` (optional)
/lgtc/meta               std_msgs/msg/String             JSON, one message at the start
=======================  ==============================  ==================================

``/lgtc/meta`` (QoS transient-local, so a late subscriber to ``ros2 bag play`` still gets it) is
``{"format": "lgtc_bag/v1", "names": [...], "arena_size_m", "altitude_m", "start_epoch_ns",
"mission": {free-form: scenario, seed, model, dt...}}``; the same JSON is also stored under
``custom_data: lgtc_meta`` in metadata.yaml. Comm payloads stay in normalized arena units; metres
<-> arena units is `frames.ArenaFrame` (half extent ``arena_size_m / 2``, height ``altitude_m``).

One clock: every stamp (header stamps, the ``stamp_s`` of comm payloads, ``start_epoch_ns``) is
the graph's ROS clock. `BagRecorder` stamps every message of tick t, bag time, header and payload
``stamp_s`` alike, ``start_epoch_ns + round(t * 1e9)``. Bag (log) times are never read back:
``ros2 bag record`` writes receive times, which jitter by milliseconds and are not in tick order.

Ticks (how `read_bag` groups a recording): the world publishes exactly one ``/lgtc/demands`` per
world tick, and its ``stamp_s`` is the tick's time; those stamps are the ticks (``t = stamp -
start_epoch_ns``, negative for ticks before the mission clock started, e.g. while hardware waits
for takeoff). Every other message belongs to the latest tick stamped at most its own stamp +
`TICK_TOLERANCE_NS` (poses and velocities: ``header.stamp``; payloads: ``stamp_s``); when several
messages of one topic fall into one tick, the latest stamp wins (e.g. 100 Hz motion-capture poses:
the last one before the next tick). Messages stamped before the first tick, or one median tick
period or more after the last one (the world had stopped), are dropped and counted in
`Recording.rejected`.
"""
from __future__ import annotations

import bisect
import functools
import json
import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame

POSE, TWIST = "geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/TwistStamped"
FLOATS, STRING = "std_msgs/msg/Float64MultiArray", "std_msgs/msg/String"
FRAME = "world"
FORMAT = "lgtc_bag/v1"
START_EPOCH_NS = 1_700_000_000 * 10**9
"""Default bag start (2023-11-14): fixed, so the same inputs give a byte-identical bag."""
BAG_VERSION = 8
"""rosbag2 metadata version of Jazzy; v9 (Kilted) re-encodes QoS in a way Jazzy cannot parse."""
TICK_TOLERANCE_NS = 1_000_000
"""A message stamped up to 1 ms before a world tick belongs to that tick. The world's tick time
is float64 seconds since the epoch (resolving ~0.24 us today), the same instant elsewhere an exact
ns header stamp (BagRecorder writes both), so a message "at the tick" may read a fraction of a
microsecond early. 1 ms is far above that, yet 1/50 of a 20 Hz tick: the nodes stamp their outputs
milliseconds after the tick they answer, and a tick takes from the one before only what was stamped
in the last millisecond before it."""


class BagError(ValueError):
    """A path is not an LGTC rosbag2 folder or lacks required topics; the message names the path."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: `kind` says what it carries, `agent` its drone index (None = global)."""

    topic: str
    msgtype: str
    kind: str
    agent: int | None = None
    required: bool = True


_PER_AGENT = (("pose", POSE), ("cmd_vel_nominal", TWIST), ("cmd_vel_safe", TWIST),
              ("lgtc/message", FLOATS), ("lgtc/state", FLOATS))


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def agent_names(names: Sequence[str] | int) -> tuple[str, ...]:
    """`names` checked as ROS namespace tokens; an int N means ``comm.default_names(N)``."""
    names = comm.default_names(names) if isinstance(names, int) else tuple(names)
    if len(set(names)) != len(names) or not all(_NAME.fullmatch(n) for n in names):
        raise ValueError(f"drone names must be unique ROS name tokens, got {names}")
    return names


def mission_meta(names: Sequence[str], arena_size_m: float, altitude_m: float, start_epoch_ns: int,
                 mission: Mapping | None = None) -> dict:
    """The ``/lgtc/meta`` JSON object (the recorder writes it; the ROS world_node publishes it
    transient-local, so ``ros2 bag record`` of a live graph captures it too)."""
    return {"format": FORMAT, "names": list(names), "arena_size_m": arena_size_m, "altitude_m": altitude_m,
            "start_epoch_ns": int(start_epoch_ns), "mission": dict(mission or {})}


def meta_json(meta: Mapping) -> str:
    return json.dumps(meta, default=_json_default, sort_keys=True)


def topics(names: Sequence[str] | int) -> dict[str, TopicSpec]:
    """Every topic of a recording for drones `names`, keyed by topic name, in writing order."""
    names = agent_names(names)
    specs = [TopicSpec("/lgtc/meta", STRING, "meta"), TopicSpec("/lgtc/demands", FLOATS, "demands"),
             TopicSpec("/lgtc/reward_terms", FLOATS, "reward_terms", required=False)]
    specs += [TopicSpec(f"/{name}/{suffix}", msgtype, suffix.removeprefix("lgtc/"), i)
              for i, name in enumerate(names) for suffix, msgtype in _PER_AGENT]
    return {s.topic: s for s in specs}


@functools.cache
def typestore() -> Any:
    """The ROS 2 Jazzy typestore (message classes and CDR serializers)."""
    return get_typestore(Stores.ROS2_JAZZY)


def _qos(durability: QosDurability) -> Qos:
    # reliable keep-last-10, as rclpy's default publisher profile; 0 s times mean "unspecified"
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return str(value)  # paths, enums: readable rather than a crash at mission start


def _msg(msgtype: str, **fields: Any) -> Any:
    """A typestore message instance, e.g. ``_msg("geometry_msgs/msg/Vector3", x=1.0, y=0.0, z=0.0)``."""
    return typestore().types[msgtype](**fields)


def _header(ns: int) -> Any:
    stamp = _msg("builtin_interfaces/msg/Time", sec=ns // 10**9, nanosec=ns % 10**9)
    return _msg("std_msgs/msg/Header", stamp=stamp, frame_id=FRAME)


def _pose(ns: int, x: float, y: float, z: float) -> Any:
    pose = _msg("geometry_msgs/msg/Pose", position=_msg("geometry_msgs/msg/Point", x=x, y=y, z=z),
                orientation=_msg("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    return _msg(POSE, header=_header(ns), pose=pose)


def _twist(ns: int, vx: float, vy: float) -> Any:
    def vec(x: float, y: float) -> Any:
        return _msg("geometry_msgs/msg/Vector3", x=x, y=y, z=0.0)
    return _msg(TWIST, header=_header(ns), twist=_msg("geometry_msgs/msg/Twist", linear=vec(vx, vy),
                                                      angular=vec(0.0, 0.0)))


def _floats(arr: comm.FloatArray) -> Any:
    t = typestore().types
    return arr.to_msg(t[FLOATS], t["std_msgs/msg/MultiArrayLayout"], t["std_msgs/msg/MultiArrayDimension"])


class RawBagWriter:
    """Serialized messages as they arrive, into a new rosbag2 folder (MCAP), logged at their
    receive time: what `ros2 bag record` writes of a live graph (`ros2 bag record` itself needs a
    full ROS 2; `nodes.probe.BagTap` feeds this from rclpy). Use as a context manager."""

    def __init__(self, path: str | Path, names: Sequence[str]) -> None:
        self.path, self.specs = Path(path), topics(names)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> RawBagWriter:
        self._writer.open()
        for spec in self.specs.values():
            durability = QosDurability.TRANSIENT_LOCAL if spec.kind == "meta" else QosDurability.VOLATILE
            self._conns[spec.topic] = self._writer.add_connection(
                spec.topic, spec.msgtype, typestore=typestore(), offered_qos_profiles=[_qos(durability)])
        return self

    def write(self, topic: str, log_ns: int, cdr: bytes) -> None:
        self._writer.write(self._conns[topic], int(log_ns), cdr)

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


class BagRecorder:
    """Writes one tick at a time to a new rosbag2 folder `path`. Use as a context manager.

    `names` [N] drone names, or N for ``cf1..cfN`` (`agent_names`); `arena_size_m` is the
    side of the [-1, 1]^2 arena in metres; `metadata` is the free-form mission dict stored in
    ``/lgtc/meta``. The bag is closed (metadata.yaml written) even when the body raises: the
    ticks before a crash are the ones worth keeping.
    """

    def __init__(self, path: str | Path, names: Sequence[str] | int, arena_size_m: float = 4.0,
                 altitude_m: float = 1.0, metadata: Mapping[str, Any] | None = None, *,
                 start_epoch_ns: int = START_EPOCH_NS, bag_version: int = BAG_VERSION) -> None:
        if arena_size_m <= 0 or altitude_m <= 0:  # altitude > 0: the reader infers "active" from z
            raise ValueError(f"arena_size_m, altitude_m must be > 0, got {arena_size_m}, {altitude_m}")
        self.path, self.names = Path(path), agent_names(names)
        self.frame = ArenaFrame(half_extent_m=arena_size_m / 2, flight_height_m=altitude_m)
        self.start_epoch_ns = int(start_epoch_ns)
        self.meta = mission_meta(self.names, arena_size_m, altitude_m, self.start_epoch_ns, metadata)
        self._writer = Writer(self.path, version=bag_version, storage_plugin=StoragePlugin.MCAP)
        self._conns: dict[tuple[str, int | None], Any] = {}

    def open(self) -> BagRecorder:
        """Create the folder, register every topic and write ``/lgtc/meta``."""
        text = meta_json(self.meta)
        self._writer.set_custom_data("lgtc_meta", text)
        self._writer.open()
        for spec in topics(self.names).values():
            durability = QosDurability.TRANSIENT_LOCAL if spec.kind == "meta" else QosDurability.VOLATILE
            self._conns[spec.kind, spec.agent] = self._writer.add_connection(
                spec.topic, spec.msgtype, typestore=typestore(), offered_qos_profiles=[_qos(durability)])
        self._write("meta", None, self.start_epoch_ns, typestore().types[STRING](data=text))
        return self

    def close(self) -> None:
        """Finish the .mcap and write metadata.yaml. Idempotent."""
        if self._conns:
            self._conns = {}
            self._writer.close()

    def __enter__(self) -> BagRecorder:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _write(self, kind: str, agent: int | None, ns: int, msg: Any) -> None:
        conn = self._conns[kind, agent]
        self._writer.write(conn, ns, typestore().serialize_cdr(msg, conn.msgtype))

    def write_tick(self, t: float, pos: np.ndarray, active: np.ndarray, v_nominal: np.ndarray,
                   v_safe: np.ndarray, messages: Sequence[comm.NeighbourMessage],
                   demands: comm.DemandBroadcast,
                   states: Sequence[tuple[np.ndarray, ...] | None],
                   reward_terms: tuple[Sequence[str], np.ndarray] | None = None) -> None:
        """Record one control tick.

        t: s since start. pos [N,2] normalized units; active [N] bool (False = landed, z = 0);
        v_nominal, v_safe [N,2] normalized units/s; messages: the neighbour messages broadcast
        this tick (any subset, routed by agent_id); demands: the central broadcast; states [N]:
        (x [F], attention [M], chosen consumer or -1[, supply [r]]) per agent, None to skip one; reward_terms:
        (term names [T], values [N,T]) or None. The stamps of `messages` and `demands` are replaced
        by the tick time: the reader groups by payload stamps, which must be on the bag's clock.
        """
        if not self._conns:
            raise RuntimeError(f"{self.path}: recorder is not open")
        ns = self.start_epoch_ns + round(t * 1e9)
        stamp = ns / 1e9
        # build every message first so that a bad argument writes nothing of this tick
        out = self._agent_messages(ns, pos, active, v_nominal, v_safe, states)
        for msg in messages:
            if not 0 <= msg.agent_id < len(self.names):
                raise ValueError(f"message from agent_id {msg.agent_id}, only {len(self.names)} agents")
            msg = replace(msg, stamp=stamp)
            out.append(("message", msg.agent_id, _floats(comm.encode_neighbour(msg))))
        out.append(("demands", None, _floats(comm.encode_demands(replace(demands, stamp=stamp)))))
        if reward_terms is not None:
            out.append(("reward_terms", None, _floats(comm.encode_reward_terms(stamp, *reward_terms))))
        for kind, agent, msg in out:
            self._write(kind, agent, ns, msg)

    def _agent_messages(self, ns: int, pos: np.ndarray, active: np.ndarray, v_nominal: np.ndarray,
                        v_safe: np.ndarray, states: Sequence[tuple[np.ndarray, ...] | None]
                        ) -> list[tuple[str, int | None, Any]]:
        """Pose (metres), both velocities (m/s) and the LGTC state of every agent at `ns`."""
        n = len(self.names)
        pos_m = self.frame.to_metres(np.asarray(pos, dtype=np.float64).reshape(n, 2))
        v_nom, v_safe = (self.frame.velocity_to_metres(np.asarray(v, dtype=np.float64).reshape(n, 2))
                         for v in (v_nominal, v_safe))
        active = np.asarray(active, dtype=bool).reshape(n)
        if len(states) != n:
            raise ValueError(f"states has {len(states)} entries for {n} agents")
        out: list[tuple[str, int | None, Any]] = []
        for i in range(n):
            z = self.frame.flight_height_m if active[i] else 0.0
            out.append(("pose", i, _pose(ns, float(pos_m[i, 0]), float(pos_m[i, 1]), z)))
            out.append(("cmd_vel_nominal", i, _twist(ns, float(v_nom[i, 0]), float(v_nom[i, 1]))))
            out.append(("cmd_vel_safe", i, _twist(ns, float(v_safe[i, 0]), float(v_safe[i, 1]))))
            if states[i] is not None:
                x, attention, choice, *supply = states[i]
                out.append(("state", i, _floats(comm.encode_agent_state(i, ns / 1e9, x, attention, choice,
                                                                        supply[0] if supply else None))))
        return out


@dataclass(frozen=True, eq=False)
class Recording:
    """A read-back mission, arrays over T world ticks (see the module docstring), normalized units.
    Missing samples are NaN (choice: -1, active: False)."""

    names: tuple[str, ...]
    t: np.ndarray              # [T] s since start (the world's tick stamps)
    pos: np.ndarray            # [T,N,2]
    active: np.ndarray         # [T,N] bool
    v_nominal: np.ndarray      # [T,N,2] units/s
    v_safe: np.ndarray         # [T,N,2] units/s
    x: np.ndarray              # [T,N,F]
    attention: np.ndarray      # [T,N,M]
    choice: np.ndarray         # [T,N] int
    supply: np.ndarray         # [T,N,r] (r = 0 when the recorder was given none)
    psi: np.ndarray            # [T,N,G]
    consumer_pos: np.ndarray   # [T,M,2]
    demand: np.ndarray         # [T,M,r]
    kinds: np.ndarray          # [r] 0 instantaneous, 1 persistent
    reward_terms: dict[str, np.ndarray]  # name -> [T,N]
    meta: dict[str, Any]       # the free-form mission dict given to BagRecorder
    arena_size_m: float
    altitude_m: float
    start_epoch_ns: int
    rejected: dict[str, int]   # messages left out, by comm decode reason, "before_first_tick", "after_last_tick"


def _frame(meta: Mapping[str, Any]) -> ArenaFrame:
    return ArenaFrame(half_extent_m=meta["arena_size_m"] / 2, flight_height_m=meta["altitude_m"])


def _open_meta(reader: Reader, path: Path) -> dict[str, Any]:
    conns = [c for c in reader.connections if c.topic == "/lgtc/meta" and c.msgtype == STRING]
    for _, _, raw in reader.messages(connections=conns):
        meta = json.loads(typestore().deserialize_cdr(raw, STRING).data)
        if meta.get("format") != FORMAT:
            raise BagError(f"{path}: /lgtc/meta has format {meta.get('format')!r}, expected {FORMAT}")
        if missing := {"names", "arena_size_m", "altitude_m", "start_epoch_ns"} - set(meta):
            raise BagError(f"{path}: /lgtc/meta lacks {sorted(missing)}")
        try:
            _frame(meta)
        except (TypeError, ValueError) as exc:
            raise BagError(f"{path}: /lgtc/meta: {exc}") from None
        return meta
    raise BagError(f"{path}: missing topic /lgtc/meta ({STRING}); not an LGTC recording")


def _check_topics(reader: Reader, specs: Mapping[str, TopicSpec], path: Path) -> None:
    present = {c.topic: c.msgtype for c in reader.connections}
    missing = [f"{s.topic} ({s.msgtype})" for s in specs.values()
               if s.required and present.get(s.topic) != s.msgtype]
    if missing:
        raise BagError(f"{path}: missing required topics: {', '.join(missing)}")


def read_bag(path: str | Path) -> Recording:
    """Read a folder written by `BagRecorder` or by ``ros2 bag record`` of the ROS graph
    (`topics`); messages may be stored in any order, their bag times are ignored."""
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path}: not a rosbag2 folder (no metadata.yaml)")
    try:
        with Reader(path) as reader:
            meta = _open_meta(reader, path)
            specs = topics(meta["names"])
            _check_topics(reader, specs, path)
            conns = [c for c in reader.connections if c.topic in specs and specs[c.topic].kind != "meta"]
            # the checksum only breaks ties between equal stamps, whatever order the bag stores them in
            samples = [(specs[c.topic], zlib.crc32(raw), typestore().deserialize_cdr(raw, c.msgtype))
                       for c, _, raw in reader.messages(connections=conns)]
    except BagError:
        raise
    except Exception as exc:  # rosbags raises several types; the caller needs to know which path
        raise BagError(f"{path}: cannot read as a rosbag2 LGTC recording: {exc!r}") from exc
    return _assemble(path, meta, samples)


_Key = tuple[str, int]  # (kind, agent or -1)
_Rows = dict[_Key, dict[int, Any]]  # -> tick -> decoded value


def _header_ns(header: Any) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def _payload_ns(stamp_s: float) -> int:
    # to the microsecond: float64 seconds since the epoch resolve ~0.24 us, finer digits are noise;
    # rounding restores the recorder's tick instants exactly (they are whole microseconds)
    return round(stamp_s * 1e6) * 1000


def _decode(spec: TopicSpec, msg: Any, n: int, stats: comm.DecodeStats) -> tuple[int, Any] | None:
    """(stamp ns, value) of one message, None if its payload is rejected (counted in `stats`).
    Poses [x, y, z] and velocities [vx, vy] stay metric here: `_assemble` converts whole arrays."""
    if spec.kind == "pose":
        p = msg.pose.position
        return _header_ns(msg.header), np.array([p.x, p.y, p.z])
    if spec.kind.startswith("cmd_vel"):
        return _header_ns(msg.header), np.array([msg.twist.linear.x, msg.twist.linear.y])
    if spec.kind == "message":
        value = comm.decode_neighbour(msg, None, math.inf, None, None, stats)
    elif spec.kind == "state":
        value = comm.decode_agent_state(msg, stats=stats)
    elif spec.kind == "demands":
        value = comm.decode_demands(msg, None, math.inf, None, None, stats)
    else:
        value = comm.decode_reward_terms(msg, n, stats)
    return None if value is None else (_payload_ns(value.stamp), value)


def _world_ticks(stamps: Sequence[int]) -> list[int]:
    """The sorted tick stamps (ns): one per distinct world stamp. Stamps within the tolerance of
    the previous tick are that tick (the message-to-tick rule could not tell them apart)."""
    ticks: list[int] = []
    for ns in sorted(set(stamps)):
        if not ticks or ns - ticks[-1] > TICK_TOLERANCE_NS:
            ticks.append(ns)
    return ticks


def _by_tick(decoded: Sequence[tuple[_Key, int, int, Any]], ticks: Sequence[int], dropped: Counter) -> _Rows:
    """Every (key, stamp, tie-break, value) to its tick (module docstring); the latest stamp wins."""
    # the world stopped after its last tick: that tick takes only what a next one, a median period later, would not
    end = ticks[-1] + (int(np.median(np.diff(ticks))) if len(ticks) > 1 else math.inf)
    held: dict[_Key, dict[int, tuple[int, int, Any]]] = defaultdict(dict)
    for key, ns, tie, value in decoded:
        k = bisect.bisect_right(ticks, ns + TICK_TOLERANCE_NS) - 1
        if k < 0 or ns + TICK_TOLERANCE_NS >= end:
            dropped["before_first_tick" if k < 0 else "after_last_tick"] += 1
            continue
        old = held[key].get(k)
        if old is None or (ns, tie) > old[:2]:
            held[key][k] = (ns, tie, value)
    return defaultdict(dict, {key: {k: v[2] for k, v in by_tick.items()} for key, by_tick in held.items()})


def _stack(rows: Mapping[int, np.ndarray], ticks: int, shape: tuple[int, ...], what: str,
           path: Path) -> np.ndarray:
    """[ticks, *shape] float array, NaN where a tick has no sample."""
    out = np.full((ticks, *shape), np.nan)
    for k, row in rows.items():
        if np.shape(row) != shape:
            raise BagError(f"{path}: {what} changes shape mid-recording ({np.shape(row)} vs {shape})")
        out[k] = row
    return out


def _first(rows: _Rows, kind: str) -> Any:
    """The decoded value of `kind` at its earliest tick (they all share one shape), or None."""
    found = [(k, agent, v) for (kd, agent), by_tick in rows.items() if kd == kind for k, v in by_tick.items()]
    return min(found, key=lambda f: f[:2])[2] if found else None


def _drop_cut_tick(rows: dict, tick_ns: list[int], dropped: Counter) -> list[int]:
    """A recording stopped mid-tick (`ros2 bag record` interrupted while the world published)
    ends with a tick missing poses the tick before had: that tick is cut, not the drones landed."""
    if len(tick_ns) < 2:
        return tick_ns
    last, before = len(tick_ns) - 1, len(tick_ns) - 2
    poses = [by_tick for (kind, agent), by_tick in rows.items() if kind == "pose"]
    if sum(last in p for p in poses) >= sum(before in p for p in poses):
        return tick_ns
    for by_tick in rows.values():
        by_tick.pop(last, None)
    dropped["cut_last_tick"] += 1
    return tick_ns[:-1]


def _assemble(path: Path, meta: dict[str, Any], samples: list[tuple[TopicSpec, int, Any]]) -> Recording:
    """Group the deserialized messages into world ticks and arrange them into the `Recording` arrays."""
    stats, dropped = comm.DecodeStats(), Counter()
    names, start, frame = tuple(meta["names"]), int(meta["start_epoch_ns"]), _frame(meta)
    decoded = []
    for spec, tie, msg in samples:
        if (got := _decode(spec, msg, len(names), stats)) is not None:
            decoded.append(((spec.kind, -1 if spec.agent is None else spec.agent), got[0], tie, got[1]))
    tick_ns = _world_ticks([ns for (kind, _), ns, _, _ in decoded if kind == "demands"])
    if not tick_ns:
        raise BagError(f"{path}: no valid /lgtc/demands message; the world's demand stamps define the ticks")
    rows = _by_tick(decoded, tick_ns, dropped)
    tick_ns = _drop_cut_tick(rows, tick_ns, dropped)
    if any(agent >= 0 for (_, agent), *_ in decoded) and not any(agent >= 0 for _, agent in rows):
        raise BagError(f"{path}: no drone message is stamped within the world's ticks "
                       f"({tick_ns[0] / 1e9:.3f}..{tick_ns[-1] / 1e9:.3f} s): /lgtc/demands is on another clock")
    ticks = len(tick_ns)

    def per_agent(kind: str, get: Any, shape: tuple[int, ...]) -> np.ndarray:  # -> [T, N, *shape]
        cols = [_stack({k: get(v) for k, v in rows[kind, i].items()}, ticks, shape,
                       f"{name} {kind}", path) for i, name in enumerate(names)]
        return np.stack(cols, 1) if cols else np.full((ticks, 0, *shape), np.nan)

    def central(kind: str, get: Any, shape: tuple[int, ...]) -> np.ndarray:  # -> [T, *shape]
        return _stack({k: get(v) for k, v in rows[kind, -1].items()}, ticks, shape, kind, path)

    dem, state, nb, terms = (_first(rows, kind) for kind in ("demands", "state", "message", "reward_terms"))
    m, r = dem.demand.shape  # every tick has its /lgtc/demands
    pose_m = per_agent("pose", lambda p: p, (3,))
    choice = per_agent("state", lambda s: [s.choice], (1,))[..., 0]
    values = central("reward_terms", lambda v: v.values, terms.values.shape) if terms is not None else None
    return Recording(
        names=names, t=(np.array(tick_ns, dtype=np.int64) - start) / 1e9,
        pos=frame.to_arena(pose_m),
        active=pose_m[..., 2] > frame.flight_height_m / 2,  # NaN (no pose this tick): False
        v_nominal=frame.velocity_to_arena(per_agent("cmd_vel_nominal", lambda v: v, (2,))),
        v_safe=frame.velocity_to_arena(per_agent("cmd_vel_safe", lambda v: v, (2,))),
        x=per_agent("state", lambda s: s.x, (0 if state is None else state.x.size,)),
        attention=per_agent("state", lambda s: s.attention, (m,)),
        choice=np.where(np.isnan(choice), -1, choice).astype(np.int64),
        supply=per_agent("state", lambda s: s.supply, (0 if state is None else state.supply.size,)),
        psi=per_agent("message", lambda s: s.psi, (0 if nb is None else nb.psi.size,)),
        consumer_pos=central("demands", lambda d: d.consumer_pos, (m, 2)),
        demand=central("demands", lambda d: d.demand, (m, r)),
        kinds=dem.kinds,
        reward_terms={} if terms is None else {name: values[:, :, j] for j, name in enumerate(terms.names)},
        meta=meta.get("mission", {}), arena_size_m=float(meta["arena_size_m"]),
        altitude_m=float(meta["altitude_m"]), start_epoch_ns=start,
        rejected={**{k: v for k, v in stats.counts.items() if k != "ok"}, **dropped},
    )
