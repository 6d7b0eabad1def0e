"""The LGTC wire format: every payload is a labelled ``std_msgs/msg/Float64MultiArray``.

ROS-free on purpose: a Float64MultiArray is mirrored by `FloatArray` (`Dim` = one
``std_msgs/MultiArrayDimension``). Adapters to real messages are one call each:
``FloatArray.from_msg(msg)`` reads any object shaped like the message (rclpy or rosbags) and
``arr.to_msg(Float64MultiArray, MultiArrayLayout, MultiArrayDimension)`` builds one. float64
because float32 resolves a stamp in seconds since the epoch only to about two minutes.

Layout (what ``ros2 topic echo`` shows). ``dim[0]`` names the schema and version and its
``size`` is the payload length; every following dim is one block, laid out back to back in
``data[data_offset:]`` in dim order. A block's ``size`` is its element count and its
``stride`` its row length (a [M,2] block has size 2M, stride 2; a flat block has
stride == size). ``header:a,b,c`` blocks list their fields in the label.

======================  ====================================  =======  ==========================
schema (dim[0])         block label                           size     contents
======================  ====================================  =======  ==========================
lgtc_neighbour/v1       header:version,agent_id,stamp_s       3        version 1, int id, seconds
(/{name}/lgtc/message)  position:x,y                          2        normalized arena units
                        psi                                   G        feature vector Psi_i
                        x                                     F        consensus state x_i
lgtc_demands/v1         header:version,stamp_s                2
(/lgtc/demands)         consumer_pos:x,y                      2M       [M,2] row-major, stride 2
                        demand                                M*r      [M,r] open demand, stride r
                        kinds:0=instantaneous,1=persistent    r        per resource type
lgtc_state/v1           header:version,agent_id,stamp_s       3
(/{name}/lgtc/state)    x                                     F        consensus state
                        attention                             M        attention over consumers
                        choice                                1        consumer index, -1 = none
                        supply                                r        own supplies (0 if unknown)
lgtc_reward_terms/v1    header:version,stamp_s                2
(/lgtc/reward_terms)    terms:<name1>,<name2>,...             N*T      [N,T] per agent, stride T
lgtc_supply/v1          header:version,agent_id,stamp_s       3        from the world (simulated or
(/{name}/lgtc/supply)   supply                                r        virtual resources) to a drone:
                        active                                1        own supplies; 1 flying, 0 landed
lgtc_cbf/v1             header:version,stamp_s                2        the CBF node's record:
(/lgtc/cbf)             counters:<name1>,<name2>,...          C        calls, solved, fallback, ...
                        fallbacks                             N        per drone, since the start
                        uncertainty                           N        arena units, this tick
lgtc_inbox/v1           header:version,stamp_s                2        from the radio to one drone:
(/{name}/lgtc/inbox)    messages:agent_id,stamp_s,x,y,psi,x   K*(4+G+F)  [K, 4+G+F], one row per
                                                                       neighbour message delivered
                                                                       this tick (K may be 0)
======================  ====================================  =======  ==========================

Why an inbox bundle rather than one message per neighbour: the radio delivers a tick's messages
together, so one bundle per receiver and tick lets every subscriber keep only the newest (QoS
keep-last 1). Per-neighbour messages on one topic would need a deep queue, which a saturated
executor drains oldest-first: ticks-old neighbour states reached the policy that way.

Decoders never raise: every outcome is counted in a `DecodeStats` under one of `REASONS` and
rejections are logged on logger ``lgtc_ros.comm`` (warning at the 1st, 2nd, 4th, 8th...
occurrence of a reason, debug otherwise) so a flood of bad packets cannot spam the log.
Passing ``now=None`` skips the age checks (replaying a recording).
"""
from __future__ import annotations

import array
import functools
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

VERSION = 1
FUTURE_TOLERANCE_S = 0.1
"""Accepted clock skew, s: two 20 Hz ticks, generous for chrony-synced drones."""
REASONS = ("ok", "bad_label", "bad_version", "bad_length", "non_finite", "bad_value", "stale",
           "future", "malformed")
NEIGHBOUR, DEMANDS = "lgtc_neighbour", "lgtc_demands"
STATE, REWARD_TERMS = "lgtc_state", "lgtc_reward_terms"
SUPPLY = "lgtc_supply"
INBOX = "lgtc_inbox"
CBF = "lgtc_cbf"

_log = logging.getLogger("lgtc_ros.comm")
_T = TypeVar("_T")


def default_names(n: int) -> tuple[str, ...]:
    """Agent index i <-> name ``cf{i+1}``: the default for every `names` parameter."""
    return tuple(f"cf{i + 1}" for i in range(n))


@dataclass(frozen=True)
class Dim:
    """Mirror of ``std_msgs/msg/MultiArrayDimension``."""

    label: str
    size: int
    stride: int


@dataclass(frozen=True, eq=False)
class FloatArray:
    """Mirror of ``std_msgs/msg/Float64MultiArray``; `data` is float64 [len]."""

    dims: tuple[Dim, ...]
    data: np.ndarray
    data_offset: int = 0

    def to_fields(self) -> tuple[list[tuple[str, int, int]], int, np.ndarray]:
        """``([(label, size, stride), ...], data_offset, data)`` for hand-written adapters."""
        return [(d.label, d.size, d.stride) for d in self.dims], self.data_offset, self.data

    @classmethod
    def from_fields(cls, dims: Sequence[tuple[str, int, int]], data_offset: int, data: Any) -> FloatArray:
        """Inverse of `to_fields`; `data` is any float sequence (list, array.array, ndarray)."""
        return cls(tuple(Dim(str(l), int(s), int(st)) for l, s, st in dims), _as_f64(data), int(data_offset))

    @classmethod
    def from_msg(cls, msg: Any) -> FloatArray:
        """From any object with ``.layout.dim[*].label/size/stride``, ``.layout.data_offset``,
        ``.data`` (rclpy and rosbags messages both qualify)."""
        dims = [(d.label, d.size, d.stride) for d in msg.layout.dim]
        return cls.from_fields(dims, msg.layout.data_offset, msg.data)

    def to_msg(self, array_cls: type, layout_cls: type, dim_cls: type, *, rclpy: bool = False) -> Any:
        """Build a real message from its three classes (std_msgs Float64MultiArray,
        MultiArrayLayout, MultiArrayDimension). rclpy's generated setters reject numpy arrays
        for ``float64[]`` (they want array.array('d')) while rosbags requires numpy: hence `rclpy`."""
        dims = [dim_cls(label=d.label, size=d.size, stride=d.stride) for d in self.dims]
        data = array.array("d", self.data.tobytes()) if rclpy else self.data
        return array_cls(layout=layout_cls(dim=dims, data_offset=self.data_offset), data=data)


def _as_f64(data: Any) -> np.ndarray:
    # ndarray view of array.array / memoryview without a copy, lists copied
    return np.asarray(data, dtype=np.float64).reshape(-1)


@dataclass(frozen=True, eq=False)
class NeighbourMessage:
    """What drone i broadcasts each tick. position [2] normalized units, psi [G], x [F]."""

    agent_id: int
    stamp: float
    position: np.ndarray
    psi: np.ndarray
    x: np.ndarray
    packed: np.ndarray | None = field(default=None, repr=False)
    """(position, psi, x) as one row [2+G+F] when the fields are views of it (decoded messages)."""

    def body(self) -> np.ndarray:
        """(position, psi, x) as one row [2+G+F]: a receiver stacks K rows in one call."""
        if self.packed is not None:
            return self.packed
        return np.concatenate((np.ravel(self.position), np.ravel(self.psi), np.ravel(self.x)))


@dataclass(frozen=True, eq=False)
class DemandBroadcast:
    """Consumers: consumer_pos [M,2] normalized, demand [M,r] open, kinds [r] (0 inst., 1 pers.)."""

    stamp: float
    consumer_pos: np.ndarray
    demand: np.ndarray
    kinds: np.ndarray


@dataclass(frozen=True, eq=False)
class AgentState:
    """Recorded LGTC state of one agent: x [F], attention [M], choice (consumer, -1 = none),
    supply [r] (what it carried when deciding: replaying a recording through a policy needs it)."""

    agent_id: int
    stamp: float
    x: np.ndarray
    attention: np.ndarray
    choice: int
    supply: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True, eq=False)
class SupplyStatus:
    """What the world tells drone `agent_id`: its supplies [r] and whether it still flies."""

    agent_id: int
    stamp: float
    supply: np.ndarray
    active: bool


@dataclass(frozen=True, eq=False)
class RewardTerms:
    """Per-agent reward terms: values [N,T], column t named names[t]."""

    stamp: float
    names: tuple[str, ...]
    values: np.ndarray


@dataclass
class DecodeStats:
    """Counts every decode outcome by reason; logs rejections at a count-limited rate."""

    counts: Counter = field(default_factory=Counter)
    logger: logging.Logger = field(default=_log, repr=False)

    def record(self, schema: str, reason: str, detail: str = "") -> None:
        """Count one outcome. Warn at the 1st, 2nd, 4th, 8th... rejection of a reason."""
        self.counts[reason] += 1
        if reason == "ok":
            return
        n = self.counts[reason]
        level = logging.WARNING if n & (n - 1) == 0 else logging.DEBUG
        self.logger.log(level, "%s rejected: %s (%s) [%d so far]", schema, reason, detail, n)

    @property
    def rejected(self) -> int:
        """Total decodes that returned None."""
        return sum(v for k, v in self.counts.items() if k != "ok")


DEFAULT_STATS = DecodeStats()
"""Used when a decoder gets ``stats=None``, so the log rate limit still applies."""


class _Reject(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------- generic pack / unpack

def _header_label(fields: Sequence[str]) -> str:
    return "header:" + ",".join(fields)


def _pack(schema: str, header_fields: Sequence[str], header: Sequence[float],
          blocks: Sequence[tuple[str, np.ndarray]]) -> FloatArray:
    """Concatenate header + blocks; 2-D blocks get their row length as stride."""
    parts = [np.asarray(header, dtype=np.float64)] + [np.asarray(b, dtype=np.float64) for _, b in blocks]
    dims = _pack_dims(schema, tuple(header_fields), tuple((label, p.shape) for (label, _), p in zip(blocks, parts[1:])))
    data = np.concatenate([p.reshape(-1) for p in parts])
    data.flags.writeable = False  # shared by every subscriber of a published message
    return FloatArray(dims, data)


@functools.lru_cache(maxsize=512)
def _pack_dims(schema: str, header_fields: tuple[str, ...], blocks: tuple[tuple[str, tuple[int, ...]], ...]
               ) -> tuple[Dim, ...]:
    # a drone sends the same layout every tick: build its dims once
    dims = [Dim(_header_label(header_fields), len(header_fields), len(header_fields))]
    for label, shape in blocks:
        size = math.prod(shape)
        dims.append(Dim(label, size, shape[-1] if len(shape) == 2 else size))
    return (Dim(f"{schema}/v{VERSION}", sum(d.size for d in dims), sum(d.size for d in dims)), *dims)


def _unpack(arr: Any, schema: str, header_fields: tuple[str, ...], labels: tuple[str, ...]
            ) -> tuple[np.ndarray, list[tuple[str, np.ndarray, int]]]:
    """Validate the layout of `arr` against a schema; return (header, [(label, flat, stride)]).

    A label ending in ':' matches by prefix (the reward-term names follow it).
    """
    if not isinstance(arr, FloatArray):
        arr = FloatArray.from_msg(arr)
    layout = _check_layout(arr.dims, arr.data_offset, arr.data.size, schema, header_fields, labels)
    if isinstance(layout, _Reject):
        raise _Reject(layout.reason, layout.detail)  # a fresh one: a re-raised instance would grow its traceback
    data = arr.data[arr.data_offset:]
    if not np.isfinite(data).all():
        raise _Reject("non_finite", f"{int((~np.isfinite(data)).sum())} of {data.size} values")
    if data[0] != VERSION:
        raise _Reject("bad_version", f"header version {data[0]}")
    n_head, blocks = layout
    return data[:n_head], [(label, data[a:b], stride) for label, a, b, stride in blocks]


@functools.lru_cache(maxsize=512)
def _check_layout(dims: tuple[Dim, ...], data_offset: int, data_len: int, schema: str,
                  header_fields: tuple[str, ...], labels: tuple[str, ...]
                  ) -> _Reject | tuple[int, tuple[tuple[str, int, int, int], ...]]:
    """The layout checks of `_unpack`, which depend on the dims alone: cached, since a sender
    keeps its layout. Returns the rejection, or (header length, [(label, start, end, stride)])."""
    if not dims:
        return _Reject("bad_label", "no dims")
    name, sep, ver = dims[0].label.partition("/v")
    if name != schema or not sep:
        return _Reject("bad_label", f"schema {dims[0].label!r}, expected {schema}/v{VERSION}")
    if ver != str(VERSION):
        return _Reject("bad_version", f"{dims[0].label!r}")
    want = [_header_label(header_fields), *labels]
    got = [d.label for d in dims[1:]]
    if len(got) != len(want) or not all(g == w or (w.endswith(":") and g.startswith(w))
                                        for g, w in zip(got, want)):
        return _Reject("bad_label", f"blocks {got}")
    n = data_len - data_offset if data_offset >= 0 else 0
    sizes = [d.size for d in dims[1:]]
    if data_offset < 0 or dims[0].size != n or sum(sizes) != n or min(sizes) < 0 or sizes[0] != len(header_fields):
        return _Reject("bad_length", f"data {n}, dims {[dims[0].size, *sizes]}")
    out, start = [], sizes[0]
    for d in dims[2:]:
        if (d.stride <= 0 and d.size > 0) or (d.stride > 0 and d.size % d.stride):
            return _Reject("bad_length", f"block {d.label!r} size {d.size} stride {d.stride}")
        out.append((d.label, start, start + d.size, d.stride))
        start += d.size
    return sizes[0], tuple(out)


def _expect(label: str, got: int, want: int | None) -> None:
    if want is not None and got != want:
        raise _Reject("bad_length", f"{label} has {got}, expected {want}")


def _int_value(label: str, v: float, lo: int, hi: float = 2**31 - 1) -> int:
    if v != math.floor(v) or not lo <= v <= hi:
        raise _Reject("bad_value", f"{label} = {v}")
    return int(v)


def _check_age(stamp: float, now: float | None, max_age: float, tolerance: float) -> None:
    if now is None:
        return
    if now - stamp > max_age:
        raise _Reject("stale", f"age {now - stamp:.3f} s > {max_age} s")
    if stamp - now > tolerance:
        raise _Reject("future", f"{stamp - now:.3f} s ahead")


def _guard(schema: str, stats: DecodeStats | None, decode: Callable[[], _T]) -> _T | None:
    """Run one decode; count and log its outcome; swallow everything (control loop safety)."""
    stats = DEFAULT_STATS if stats is None else stats
    try:
        value = decode()
    except _Reject as rej:
        stats.record(schema, rej.reason, rej.detail)
        return None
    except Exception as exc:  # noqa: BLE001 -- garbage off the wire must never reach the caller
        stats.record(schema, "malformed", type(exc).__name__)
        return None
    stats.record(schema, "ok")
    return value


# ---------------------------------------------------------------- neighbour message

_NB_HEADER = ("version", "agent_id", "stamp_s")


def encode_neighbour(msg: NeighbourMessage) -> FloatArray:
    """Encode a neighbour message (schema ``lgtc_neighbour/v1``).

    What `_pack` would build, in one concatenation: every drone encodes one per tick."""
    pos = np.asarray(msg.position)
    if pos.shape != (2,):
        raise ValueError(f"position must have shape [2], got {pos.shape}")
    psi, x = np.ravel(msg.psi), np.ravel(msg.x)
    data = np.concatenate(((VERSION, int(msg.agent_id), float(msg.stamp)), pos, psi, x), dtype=np.float64)
    data.flags.writeable = False  # shared by every subscriber of a published message
    return FloatArray(_neighbour_dims(psi.size, x.size), data)


@functools.lru_cache(maxsize=64)
def _neighbour_dims(g: int, f: int) -> tuple[Dim, ...]:
    return _pack_dims(NEIGHBOUR, _NB_HEADER, (("position:x,y", (2,)), ("psi", (g,)), ("x", (f,))))


def decode_neighbour(arr: Any, now: float | None, max_age: float, expect_g: int | None,
                     expect_f: int | None, stats: DecodeStats | None = None, *,
                     future_tolerance: float = FUTURE_TOLERANCE_S) -> NeighbourMessage | None:
    """Decode a `FloatArray` (or a message object); None if rejected (see module docstring)."""
    def run() -> NeighbourMessage:
        head, blocks = _unpack(arr, NEIGHBOUR, _NB_HEADER, ("position:x,y", "psi", "x"))
        (_, pos, _), (_, psi, _), (_, x, _) = blocks
        _expect("position", pos.size, 2)
        _expect("psi", psi.size, expect_g)
        _expect("x", x.size, expect_f)
        agent = _int_value("agent_id", head[1], 0)
        _check_age(head[2], now, max_age, future_tolerance)
        body = np.concatenate((pos, psi, x))  # one copy; the fields are views of it (see `body`)
        g = psi.size
        return NeighbourMessage(agent, float(head[2]), body[:2], body[2:2 + g], body[2 + g:], body)
    return _guard(NEIGHBOUR, stats, run)


# ---------------------------------------------------------------- inbox (radio -> one drone)

_INBOX_ROW = "messages:agent_id,stamp_s,x,y,psi,x"


def encode_inbox(stamp: float, messages: Sequence[NeighbourMessage]) -> FloatArray:
    """The neighbour messages the radio delivers to one drone at `stamp` (``lgtc_inbox/v1``).
    Every message must have the same psi and x sizes (one policy per swarm)."""
    rows = [np.concatenate(([float(m.agent_id), float(m.stamp)], np.ravel(m.position), np.ravel(m.psi),
                            np.ravel(m.x))) for m in messages]
    if len({r.size for r in rows}) > 1:
        raise ValueError(f"inbox rows differ in length: {sorted({r.size for r in rows})}")
    if any(np.ravel(m.position).size != 2 for m in messages):
        raise ValueError("every message position must have 2 values")
    block = np.stack(rows) if rows else np.zeros((0, 4))
    return _pack(INBOX, _STAMP_HEADER, (VERSION, float(stamp)), [(_INBOX_ROW, block)])


def decode_inbox(arr: Any, now: float | None, max_age: float, expect_g: int, expect_f: int,
                 stats: DecodeStats | None = None, *,
                 future_tolerance: float = FUTURE_TOLERANCE_S) -> list[NeighbourMessage] | None:
    """Decode an inbox bundle into its neighbour messages; None if the bundle is rejected. A row
    that is stale or from the future is left out and counted (the others still arrive)."""
    stats = DEFAULT_STATS if stats is None else stats
    width = 4 + expect_g + expect_f

    def run() -> list[NeighbourMessage]:
        head, [(_, block, stride)] = _unpack(arr, INBOX, _STAMP_HEADER, (_INBOX_ROW,))
        if block.size and stride != width:
            raise _Reject("bad_length", f"rows of {stride}, expected {width} (G={expect_g}, F={expect_f})")
        _check_age(head[1], now, max_age, future_tolerance)
        out = []
        for row in block.reshape(-1, width):
            agent = _int_value("agent_id", row[0], 0)
            body = row[2:].copy()  # one copy; the fields are views of it
            out.append(NeighbourMessage(agent, float(row[1]), body[:2], body[2:2 + expect_g], body[2 + expect_g:], body))
        return out

    got = _guard(INBOX, stats, run)
    if got is None or now is None:
        return got
    fresh = []
    for m in got:
        try:
            _check_age(m.stamp, now, max_age, future_tolerance)
        except _Reject as rej:
            stats.record(INBOX, rej.reason, f"row of agent {m.agent_id}: {rej.detail}")
            continue
        fresh.append(m)
    return fresh


# ---------------------------------------------------------------- demand broadcast

_STAMP_HEADER = ("version", "stamp_s")
_KINDS_LABEL = "kinds:0=instantaneous,1=persistent"


def encode_demands(msg: DemandBroadcast) -> FloatArray:
    """Encode the demand broadcast (schema ``lgtc_demands/v1``)."""
    cpos = np.asarray(msg.consumer_pos, dtype=np.float64)
    demand, kinds = np.asarray(msg.demand, dtype=np.float64), np.ravel(msg.kinds).astype(np.float64)
    m, r = cpos.shape[0], kinds.size
    if cpos.shape != (m, 2) or demand.shape != (m, r):
        raise ValueError(f"consumer_pos {cpos.shape} / demand {demand.shape} / kinds [{r}] disagree")
    return _pack(DEMANDS, _STAMP_HEADER, (VERSION, float(msg.stamp)),
                 [("consumer_pos:x,y", cpos), ("demand", demand), (_KINDS_LABEL, kinds)])


def decode_demands(arr: Any, now: float | None, max_age: float, expect_m: int | None,
                   expect_r: int | None, stats: DecodeStats | None = None, *,
                   future_tolerance: float = FUTURE_TOLERANCE_S) -> DemandBroadcast | None:
    """Decode the demand broadcast; None if rejected. Demands must be >= 0, kinds 0 or 1."""
    def run() -> DemandBroadcast:
        head, blocks = _unpack(arr, DEMANDS, _STAMP_HEADER, ("consumer_pos:x,y", "demand", _KINDS_LABEL))
        (_, cpos, _), (_, demand, _), (_, kinds, _) = blocks
        m, r = cpos.size // 2, kinds.size
        _expect("consumer_pos", cpos.size, 2 * m)
        _expect("consumers", m, expect_m)
        _expect("resource kinds", r, expect_r)
        _expect("demand", demand.size, m * r)
        if not np.isin(kinds, (0.0, 1.0)).all() or (demand < 0).any():
            raise _Reject("bad_value", "kinds not in {0,1} or negative demand")
        _check_age(head[1], now, max_age, future_tolerance)
        return DemandBroadcast(float(head[1]), cpos.reshape(m, 2).copy(), demand.reshape(m, r).copy(),
                               kinds.astype(np.int64))
    return _guard(DEMANDS, stats, run)


# ---------------------------------------------------------------- agent state (recording)

def encode_agent_state(agent_id: int, stamp: float, x: np.ndarray, attention: np.ndarray,
                       choice: int, supply: np.ndarray | None = None) -> FloatArray:
    """Encode one agent's x [F], attention [M], chosen consumer (-1 = none) and supplies [r]
    (empty when unknown): ``lgtc_state/v1``."""
    return _pack(STATE, _NB_HEADER, (VERSION, int(agent_id), float(stamp)),
                 [("x", np.ravel(x)), ("attention", np.ravel(attention)),
                  ("choice", np.array([int(choice)])),
                  ("supply", np.zeros(0) if supply is None else np.ravel(supply))])


def decode_agent_state(arr: Any, expect_f: int | None = None, expect_m: int | None = None,
                       stats: DecodeStats | None = None, *, now: float | None = None,
                       max_age: float = math.inf) -> AgentState | None:
    """Decode an agent state; None if rejected. choice must be -1 or a consumer index < M."""
    def run() -> AgentState:
        head, blocks = _unpack(arr, STATE, _NB_HEADER, ("x", "attention", "choice", "supply"))
        (_, x, _), (_, att, _), (_, choice, _), (_, supply, _) = blocks
        _expect("x", x.size, expect_f)
        _expect("attention", att.size, expect_m)
        _expect("choice", choice.size, 1)
        agent = _int_value("agent_id", head[1], 0)
        pick = _int_value("choice", choice[0], -1, att.size - 1)
        _check_age(head[2], now, max_age, FUTURE_TOLERANCE_S)
        if np.any(supply < 0):
            raise _Reject("bad_value", "negative supply")
        return AgentState(agent, float(head[2]), x.copy(), att.copy(), pick, supply.copy())
    return _guard(STATE, stats, run)


# ---------------------------------------------------------------- supply status (world -> drone)

def encode_supply(msg: SupplyStatus) -> FloatArray:
    """Encode one drone's supplies and flying flag: ``lgtc_supply/v1``."""
    return _pack(SUPPLY, _NB_HEADER, (VERSION, int(msg.agent_id), float(msg.stamp)),
                 [("supply", np.ravel(msg.supply)), ("active", np.array([1.0 if msg.active else 0.0]))])


def decode_supply(arr: Any, now: float | None, max_age: float, expect_r: int | None,
                  stats: DecodeStats | None = None, *,
                  future_tolerance: float = FUTURE_TOLERANCE_S) -> SupplyStatus | None:
    """Decode a supply status; None if rejected (negative supply, active not 0/1, stale...)."""
    def run() -> SupplyStatus:
        head, [(_, supply, _), (_, active, _)] = _unpack(arr, SUPPLY, _NB_HEADER, ("supply", "active"))
        _expect("supply", supply.size, expect_r)
        _expect("active", active.size, 1)
        agent = _int_value("agent_id", head[1], 0)
        flying = _int_value("active", active[0], 0, 1)
        if np.any(supply < 0):
            raise _Reject("bad_value", "negative supply")
        _check_age(head[2], now, max_age, future_tolerance)
        return SupplyStatus(agent, float(head[2]), supply.copy(), bool(flying))
    return _guard(SUPPLY, stats, run)


# ---------------------------------------------------------------- reward terms (recording)

def encode_reward_terms(stamp: float, names: Sequence[str], values: np.ndarray) -> FloatArray:
    """Encode per-agent reward terms values [N,T] named by `names` [T]: ``lgtc_reward_terms/v1``."""
    vals = np.asarray(values, dtype=np.float64)
    names = list(names)
    if not names or vals.ndim != 2 or vals.shape[1] != len(names):
        raise ValueError(f"values {vals.shape} must be [N, {len(names)}] with at least one term")
    if len(set(names)) != len(names) or any(not n or "," in n for n in names):
        raise ValueError(f"term names must be unique, non-empty, comma-free: {names}")
    return _pack(REWARD_TERMS, _STAMP_HEADER, (VERSION, float(stamp)), [("terms:" + ",".join(names), vals)])


def decode_reward_terms(arr: Any, expect_n: int | None = None, stats: DecodeStats | None = None, *,
                        now: float | None = None, max_age: float = math.inf) -> RewardTerms | None:
    """Decode reward terms; None if rejected. The term names come from the block label."""
    def run() -> RewardTerms:
        head, [(label, vals, stride)] = _unpack(arr, REWARD_TERMS, _STAMP_HEADER, ("terms:",))
        names = tuple(label[len("terms:"):].split(","))
        _expect("terms", stride, len(names))
        if not all(names) or len(set(names)) != len(names):
            raise _Reject("bad_label", f"term names {names}")
        _expect("agents", vals.size // stride, expect_n)
        _check_age(head[1], now, max_age, FUTURE_TOLERANCE_S)
        return RewardTerms(float(head[1]), names, vals.reshape(-1, stride).copy())
    return _guard(REWARD_TERMS, stats, run)


# ---------------------------------------------------------------- CBF status (recording, probes)

@dataclass(frozen=True, eq=False)
class CbfStatus:
    """The CBF node's counters (name -> count), per-drone fallback counts [N] and the position
    uncertainty [N] it filtered with this tick (arena units)."""

    stamp: float
    counters: dict[str, int]
    fallbacks: np.ndarray
    uncertainty: np.ndarray


def encode_cbf_status(msg: CbfStatus) -> FloatArray:
    names = list(msg.counters)
    if not names or any(not n or "," in n for n in names):
        raise ValueError(f"counter names must be non-empty and comma-free: {names}")
    fallbacks, unc = np.ravel(msg.fallbacks), np.ravel(msg.uncertainty)
    if fallbacks.size != unc.size:
        raise ValueError(f"fallbacks [{fallbacks.size}] and uncertainty [{unc.size}] disagree")
    return _pack(CBF, _STAMP_HEADER, (VERSION, float(msg.stamp)),
                 [("counters:" + ",".join(names), np.array([msg.counters[n] for n in names], dtype=np.float64)),
                  ("fallbacks", fallbacks), ("uncertainty", unc)])


def decode_cbf_status(arr: Any, stats: DecodeStats | None = None) -> CbfStatus | None:
    def run() -> CbfStatus:
        head, [(label, counts, _), (_, fallbacks, _), (_, unc, _)] = _unpack(
            arr, CBF, _STAMP_HEADER, ("counters:", "fallbacks", "uncertainty"))
        names = label[len("counters:"):].split(",")
        _expect("counters", counts.size, len(names))
        _expect("uncertainty", unc.size, fallbacks.size)
        return CbfStatus(float(head[1]), {n: int(c) for n, c in zip(names, counts)}, fallbacks.astype(np.int64),
                         unc.copy())
    return _guard(CBF, stats, run)


# ---------------------------------------------------------------- neighbourhood rule

def neighbours_within(positions: np.ndarray, radius: float, active: np.ndarray | None = None) -> np.ndarray:
    """bool [N,N]: j is a neighbour of i iff |p_i - p_j| <= radius, i != j, both active.

    positions [N,2] and radius in the same units (normalized arena units on the drones).
    The numpy twin of `lgtc_ros.world.observation.neighbour_mask` (tested equal): the one place
    this rule lives outside the torch simulator.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions must be [N,2], got {pos.shape}")
    n = pos.shape[0]
    act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).reshape(n)
    # sqrt of summed squared differences, as torch.cdist(..., "donot_use_mm_for_euclid_dist")
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    return (dist <= radius) & ~np.eye(n, dtype=bool) & act[:, None] & act[None, :]
