"""The emulated radio: a message reaches only agents within radius C, late and lossy on demand.

All Crazyflies are commanded from one workstation, so in the lab as in simulation the radio
range is emulated (DESIGN §4). A message sent at tick k is delivered at tick k + 1 + latency
to every active agent within C *at delivery time*, unless it is dropped: independently with
`drop_prob`, or because its link (sender -> receiver) is in a loss burst. Bursts follow the
two-state Gilbert-Elliott model per link: a good link enters a burst with `burst_enter` per
tick, a bursting link recovers with `burst_exit` per tick (mean burst length 1/burst_exit ticks).
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from lgtc_ros.comm import neighbours_within

P = TypeVar("P")


@dataclass(frozen=True)
class RadioConfig:
    radius: float = 1.0
    """C, arena units."""
    latency_ticks: int = 0
    """Extra ticks of delay beyond the one tick every message takes."""
    drop_prob: float = 0.0
    """Independent loss probability per message and receiver."""
    burst_enter: float = 0.0
    """Per link and tick: probability a good link starts a loss burst."""
    burst_exit: float = 0.5
    """Per link and tick: probability a bursting link recovers."""
    seed: int = 0

    def validate(self) -> None:
        if self.radius <= 0:
            raise ValueError(f"radio radius = {self.radius}: must be > 0")
        if self.latency_ticks < 0:
            raise ValueError(f"latency_ticks = {self.latency_ticks}: must be >= 0")
        for name in ("drop_prob", "burst_enter", "burst_exit"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be a probability in [0, 1]")


@dataclass(frozen=True)
class Delivery(Generic[P]):
    """What the radio hands over at one tick: K due messages and who received each."""

    senders: np.ndarray
    """[K] sender of each message."""
    payloads: list[P]
    """[K] the messages, each carried once however many receive it."""
    received: np.ndarray
    """[N,K] bool: receiver i got message k."""

    def to(self, receiver: int) -> list[P]:
        """The payloads receiver `receiver` got, in delivery order."""
        return [self.payloads[k] for k in np.flatnonzero(self.received[receiver])]


class Radio(Generic[P]):
    """Carries opaque payloads (encoded messages) between N agents."""

    def __init__(self, n_agents: int, config: RadioConfig = RadioConfig()):
        config.validate()
        self.n, self.cfg = n_agents, config
        self.rng = np.random.default_rng(config.seed)
        self.burst = np.zeros((n_agents, n_agents), dtype=bool)  # [sender, receiver]
        self.queue: deque[tuple[int, int, P]] = deque()          # (due tick, sender, payload)
        self.stats: Counter[str] = Counter()

    def send(self, tick: int, sender: int, payload: P) -> None:
        self.queue.append((tick + 1 + self.cfg.latency_ticks, sender, payload))
        self.stats["sent"] += 1

    def deliver(self, tick: int, positions: np.ndarray, active: np.ndarray,
                in_range: np.ndarray | None = None) -> list[list[tuple[int, P]]]:
        """Inbox per receiver: [(sender, payload), ...] due at `tick`. positions [N,2], active [N];
        `in_range` [N,N] may pass `neighbours_within(positions, radius, active)` if already computed."""
        batch = self.deliver_batch(tick, positions, active, in_range)
        inbox: list[list[tuple[int, P]]] = [[] for _ in range(self.n)]
        for receiver, k in zip(*np.nonzero(batch.received)):
            inbox[receiver].append((int(batch.senders[k]), batch.payloads[k]))
        return inbox

    def deliver_batch(self, tick: int, positions: np.ndarray, active: np.ndarray,
                      in_range: np.ndarray | None = None) -> Delivery[P]:
        """The same delivery as `deliver`, as one [receiver, message] mask (no per-link Python loop)."""
        self._advance_bursts()
        due = []
        while self.queue and self.queue[0][0] <= tick:
            due.append(self.queue.popleft())
        if not due:
            return Delivery(np.zeros(0, dtype=np.int64), [], np.zeros((self.n, 0), dtype=bool))
        senders = np.fromiter((d[1] for d in due), dtype=np.int64, count=len(due))
        if in_range is None:
            in_range = neighbours_within(positions, self.cfg.radius, active)  # [receiver, sender]
        reach = in_range[:, senders]                                          # [N,K]
        bursting = self.burst[senders].T & reach
        lost = (self.rng.random((self.n, len(due))) < self.cfg.drop_prob) & reach & ~bursting \
            if self.cfg.drop_prob > 0 else np.zeros_like(reach)
        ok = reach & ~bursting & ~lost
        self.stats["delivered"] += int(ok.sum())
        self.stats["dropped_burst"] += int(bursting.sum())
        self.stats["dropped_random"] += int(lost.sum())
        return Delivery(senders, [d[2] for d in due], ok)

    def _advance_bursts(self) -> None:
        if self.cfg.burst_enter <= 0 and not self.burst.any():
            return
        u = self.rng.random(self.burst.shape)
        self.burst = np.where(self.burst, u >= self.cfg.burst_exit, u < self.cfg.burst_enter)
        np.fill_diagonal(self.burst, False)
