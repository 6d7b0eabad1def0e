"""Frame conversions, written once: the normalized arena the policies, the CBF and the simulator
speak (positions in [-1, 1]^2, velocities in arena units per second) <-> the metric world frame
of the motion-capture / Lighthouse system, of Crazyswarm2 and of every recorded pose (metres, m/s,
frame id "world").

`ArenaFrame` maps the normalized square onto a metric square of half side ``half_extent_m``
centred at ``origin_m``, flown at ``flight_height_m``. Velocities scale by ``half_extent_m`` alone
(no offset). Every module that turns a pose into arena units (agents, CBF, radio, world, bridge,
bags) calls it; none scales by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_ID = "world"
"""frame_id of every pose and velocity this package publishes or records (tf2: no leading slash)."""


def positive_finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def check_last_axis(name: str, array: np.ndarray, sizes: tuple[int, ...]) -> None:
    if array.ndim == 0 or array.shape[-1] not in sizes:
        wanted = " or ".join(f"[..., {s}]" for s in sizes)
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")


@dataclass(frozen=True)
class ArenaFrame:
    """The normalized arena [-1, 1]^2 placed in the world: [-half, half]^2 metres around origin."""

    half_extent_m: float
    origin_m: tuple[float, float] = (0.0, 0.0)
    flight_height_m: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "half_extent_m", positive_finite("half_extent_m", self.half_extent_m))
        object.__setattr__(self, "flight_height_m", positive_finite("flight_height_m", self.flight_height_m))
        try:
            origin = tuple(float(c) for c in self.origin_m)
        except (TypeError, ValueError):
            raise ValueError(f"origin_m must be two finite numbers (x, y), got {self.origin_m!r}") from None
        if len(origin) != 2 or not all(math.isfinite(c) for c in origin):
            raise ValueError(f"origin_m must be two finite numbers (x, y), got {self.origin_m!r}")
        object.__setattr__(self, "origin_m", origin)
        centre = np.array(origin)
        centre.flags.writeable = False
        object.__setattr__(self, "_origin", centre)  # (every pose of every drone converts through it)

    @classmethod
    def from_scenario(cls, scenario, origin_m: tuple[float, float] = (0.0, 0.0)) -> ArenaFrame:
        """The frame a `Scenario` describes: ``arena_size_m`` is the side, ``altitude_m`` the height."""
        return cls(
            half_extent_m=scenario.arena_size_m / 2.0,
            origin_m=origin_m,
            flight_height_m=scenario.altitude_m,
        )

    @property
    def lower_m(self) -> np.ndarray:
        """The arena's metric box, lower corner (x, y)."""
        return np.asarray(self.origin_m) - self.half_extent_m

    @property
    def upper_m(self) -> np.ndarray:
        """The arena's metric box, upper corner (x, y)."""
        return np.asarray(self.origin_m) + self.half_extent_m

    def to_metres(self, p) -> np.ndarray:
        """[..., 2] arena positions -> [..., 2] world positions in metres."""
        p = np.asarray(p, dtype=float)
        check_last_axis("p", p, (2,))
        return self._origin + p * self.half_extent_m

    def to_arena(self, p_m) -> np.ndarray:
        """[..., 2] or [..., 3] world positions in metres -> [..., 2] arena positions (z dropped)."""
        p_m = np.asarray(p_m, dtype=float)
        check_last_axis("p_m", p_m, (2, 3))
        return (p_m[..., :2] - self._origin) / self.half_extent_m

    def velocity_to_metres(self, v) -> np.ndarray:
        """[..., 2] arena units/s -> [..., 2] m/s."""
        v = np.asarray(v, dtype=float)
        check_last_axis("v", v, (2,))
        return v * self.half_extent_m

    def velocity_to_arena(self, v_m) -> np.ndarray:
        """[..., 2] or [..., 3] m/s -> [..., 2] arena units/s (vertical speed dropped)."""
        v_m = np.asarray(v_m, dtype=float)
        check_last_axis("v_m", v_m, (2, 3))
        return v_m[..., :2] / self.half_extent_m
