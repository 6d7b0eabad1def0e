"""The swarm runtime: N independent drones at 20 Hz on simulated time, an emulated radio, the CBF
safety filter, the simulator for one env applying the commands, and optional bag recording.

Per tick k (t = k dt):
  1. the consumer broadcast is encoded and decoded (as drones would receive it);
  2. the radio delivers the messages sent at tick k-1 (+ latency) to agents within C, decoded
     with the versioned comm format (stale / malformed ones are counted and skipped);
  3. every flying drone decides alone (`OnboardController`, as on board: its inputs, `prepare`,
     `step`, `finish`, each phase run for every drone in turn) and broadcasts its message;
  4. the CBF projects the nominal velocities to safe ones (per drone, for the swarm, or off);
  5. the world steps; metrics, trace and bag are updated.
With zero latency, no loss and the CBF off, this reproduces the batched evaluation of the same
policy (a test checks it). A centralized controller (the expert) can drive it too: no messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch

from lgtc_ros import comm
from lgtc_ros.evaluate import EpisodeMeter, EpisodeStats, Trace
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.runtime.asynchrony import Asynchrony, GraphTiming
from lgtc_ros.runtime.drone import DroneAgent
from lgtc_ros.runtime.heap import startup_objects_frozen
from lgtc_ros.runtime.onboard import OnboardController, Skip
from lgtc_ros.runtime.plant import demand_broadcast
from lgtc_ros.runtime.radio import Radio, RadioConfig
from lgtc_ros.safety.swarm import SwarmFilter
from lgtc_ros.scenario import Scenario
from lgtc_ros.world import TERMS, World


@dataclass(frozen=True)
class RuntimeConfig:
    cbf: Literal["decentralized", "centralized", "off"] = "decentralized"
    radio: RadioConfig = field(default_factory=RadioConfig)
    max_message_age_s: float = 0.5
    """Neighbour messages older than this are rejected as stale, s."""
    sensing_radius: float | None = None
    """Neighbours the per-drone CBF avoids (from their poses); default: the scenario's C."""
    asynchrony: Asynchrony | None = None
    """The ROS graph's timing between world, CBF and plant (late, reordered, lost, held
    commands; `runtime.asynchrony`); None: lockstep."""

    def validate(self) -> None:
        if self.cbf not in ("decentralized", "centralized", "off"):
            raise ValueError(f"cbf = {self.cbf!r}: must be decentralized, centralized or off")
        self.radio.validate()
        if self.asynchrony is not None:
            self.asynchrony.validate()


@dataclass
class MissionResult:
    stats: EpisodeStats
    trace: Trace
    tick_s: np.ndarray       # [T] wall time of each tick
    policy_s: np.ndarray     # [T] of which in the drones' policy calls
    cbf_s: np.ndarray        # [T] of which in the safety filter
    world_s: np.ndarray      # [T] of which in the simulated plant (absent on hardware)
    radio: dict[str, int]
    decode: dict[str, int]
    cbf: dict[str, int]
    choices: np.ndarray      # [T,N] consumer chosen by each drone (-1: landed / none)

    @property
    def overhead_s(self) -> np.ndarray:
        """[T] cost beyond the policy and the CBF, the simulated plant included."""
        return self.tick_s - self.policy_s - self.cbf_s

    @property
    def runtime_overhead_s(self) -> np.ndarray:
        """[T] cost of the runtime itself: beyond the policy, the CBF and the simulated plant."""
        return self.overhead_s - self.world_s


class SwarmRuntime:
    def __init__(self, scenario: Scenario, drones: list | None = None, centralized: Callable | None = None,
                 config: RuntimeConfig = RuntimeConfig(), seed: int = 0, recorder=None):
        """`drones`: one policy module per drone (`load_drone_modules`), or `centralized`: a
        callable(world) -> action [1,N,2] (the expert)."""
        if (drones is None) == (centralized is None):
            raise ValueError("give either per-drone policy modules or a centralized controller")
        config.validate()
        self.scenario, self.config, self.recorder = scenario, config, recorder
        self.radio_cfg = RadioConfig(**{**config.radio.__dict__, "radius": scenario.comm_radius})
        self.world = World(scenario, n_envs=1, seed=seed)
        self.centralized = centralized
        if drones is not None and len(drones) != scenario.n_agents:
            raise ValueError(f"{len(drones)} policy modules for {scenario.n_agents} drones")
        self.frame = ArenaFrame.from_scenario(scenario)
        self.decode_stats = comm.DecodeStats()
        # the drones' decisions are the agent node's (`OnboardController`); the controllers warm
        # their policies up here, before the clock starts, as a node does before its first tick
        self.drones = [] if drones is None else [
            OnboardController(DroneAgent(i, m, m.state_dim, m.feature_dim), self.frame, scenario.n_consumers,
                              scenario.n_resources, config.max_message_age_s, self.decode_stats)
            for i, m in enumerate(drones)]
        self.cbf = SwarmFilter(scenario, config.cbf, config.sensing_radius)

    # ------------------------------------------------------------------ the loop

    def run(self, progress: Callable[[int], None] | None = None) -> MissionResult:
        with startup_objects_frozen():  # no full garbage collection inside a tick
            return self._run(progress)

    def _run(self, progress: Callable[[int], None] | None) -> MissionResult:
        s, w = self.scenario, self.world
        radio: Radio[comm.FloatArray] = Radio(s.n_agents, self.radio_cfg)
        for drone in self.drones:
            drone.reset()
        if hasattr(self.centralized, "reset"):
            self.centralized.reset()
        timing_model = None if self.config.asynchrony is None else GraphTiming(self.config.asynchrony, s.n_agents)
        meter, trace = EpisodeMeter(w), Trace(consumer_pos=w.consumer_pos[0].numpy().copy())
        timing = {k: np.zeros(s.episode_steps) for k in ("tick", "policy", "cbf", "world")}
        choices = np.full((s.episode_steps, s.n_agents), -1)
        for k in range(s.episode_steps):
            start = time.perf_counter()
            now = k * s.dt
            pos = w.pos[0].numpy().astype(np.float64)
            active = w.active[0].numpy().copy()
            supply = w.supply[0].numpy().astype(np.float64)
            demands = self._broadcast(now)
            near = comm.neighbours_within(pos, s.comm_radius, active)  # radio range, CBF sensing
            inbox = radio.deliver_batch(k, pos, active, near)
            v_nom, messages, payloads, states, policy_s = self._decide(now, pos, active, supply, demands, inbox)
            for msg, payload in zip(messages, payloads):
                radio.send(k, msg.agent_id, payload)
            choices[k] = [st[2] if st is not None else -1 for st in states]
            t_cbf = time.perf_counter()
            if timing_model is None:
                v_safe = self._filter(v_nom, pos, active, near)
            else:
                seen = timing_model.cbf_inputs(k, pos, v_nom, active, s.v_max, s.dt)
                filtered = None if seen is None else self.cbf(seen.v_nominal, seen.pos, seen.known,
                                                              uncertainty=seen.uncertainty, hold=seen.hold)
                v_safe = timing_model.applied(k, filtered, active if seen is None else seen.known) * active[:, None]
            cbf_s = time.perf_counter() - t_cbf
            self._trace(trace, pos, v_safe, supply, active)
            t_world = time.perf_counter()
            out = w.step(torch.as_tensor(v_safe, dtype=torch.float32)[None])
            timing["world"][k] = time.perf_counter() - t_world
            meter.update(out)
            for name in TERMS:
                trace.terms[name].append(out.terms[name][0].numpy().copy())
            timing["tick"][k] = time.perf_counter() - start
            timing["policy"][k], timing["cbf"][k] = policy_s, cbf_s
            if self.recorder is not None:
                values = np.stack([out.terms[name][0].numpy() for name in TERMS], 1)
                self.recorder.write_tick(now, pos, active, v_nom, v_safe, messages, demands, states,
                                         (list(TERMS), values))
            if progress:
                progress(1)
        cbf_stats = self.cbf.stats
        return MissionResult(meter.finish(), trace, timing["tick"], timing["policy"], timing["cbf"], timing["world"],
                             dict(radio.stats), dict(self.decode_stats.counts), cbf_stats, choices)

    def _broadcast(self, now: float) -> comm.DemandBroadcast:
        sent = demand_broadcast(self.world, now)
        got = comm.decode_demands(comm.encode_demands(sent), now, self.config.max_message_age_s,
                                  self.scenario.n_consumers, self.scenario.n_resources, self.decode_stats)
        return got if got is not None else sent

    def _decide(self, now, pos, active, supply, demands, inbox):
        n = self.scenario.n_agents
        v_nom = np.zeros((n, 2))
        states: list = [None] * n
        messages: list[comm.NeighbourMessage] = []
        payloads: list[comm.FloatArray] = []
        if self.centralized is not None:
            start = time.perf_counter()
            with torch.no_grad():
                v_nom = self.centralized(self.world)[0].numpy().astype(np.float64)
            return v_nom * active[:, None], messages, payloads, states, time.perf_counter() - start
        # Each sender broadcasts one payload per tick: decode every delivered payload once (every
        # receiver would get the same result) into one block of rows (sender, stamp, body, cast to
        # the policy's float32 once), then hand each drone the rows it received (`receive_rows`).
        g, f = self.drones[0].agent.feature_dim, self.drones[0].agent.state_dim
        decoded = [comm.decode_neighbour(p, now, self.config.max_message_age_s, g, f, self.decode_stats)
                   for p in inbox.payloads]
        good = [k for k, m in enumerate(decoded) if m is not None]
        msgs = [decoded[k] for k in good]
        senders = np.fromiter((m.agent_id for m in msgs), dtype=np.int64, count=len(msgs))
        stamps = np.fromiter((m.stamp for m in msgs), dtype=np.float64, count=len(msgs))
        bodies = (np.concatenate([m.body() for m in msgs], dtype=np.float32).reshape(len(msgs), -1) if msgs
                  else np.zeros((0, 2 + g + f), dtype=np.float32))
        received = inbox.received[:, good]  # [N, K'] over the decodable ones
        pos_m = self.frame.to_metres(pos)
        spent = 0.0
        # `OnboardController.tick` phase by phase, each for every drone in turn (the same calls: inputs,
        # prepare, step, finish): each phase's code and data stay in cache across the drones, and the
        # policy calls run back to back
        prepared = []
        for i, drone in enumerate(self.drones):
            drone.on_pose(pos_m[i])
            drone.set_demands(demands)
            drone.set_supply(comm.SupplyStatus(i, now, supply[i], bool(active[i])))
            rows = received[i]
            drone.receive_rows(senders[rows], stamps[rows], bodies[rows])
            prepared.append(drone.prepare(now))
        stepped = [None if isinstance(p, Skip) else drone.step(p) for drone, p in zip(self.drones, prepared)]
        for i, (drone, p, o) in enumerate(zip(self.drones, prepared, stepped)):
            if o is None:
                continue
            out = drone.finish(p, o)
            if isinstance(out, Skip):
                continue
            d = out.decision
            spent += d.policy_s
            v_nom[i] = d.v_nominal
            messages.append(d.message)
            payloads.append(out.message)
            states[i] = (d.x, d.attention, d.choice, supply[i])
        return v_nom, messages, payloads, states, spent

    def _filter(self, v_nom: np.ndarray, pos: np.ndarray, active: np.ndarray, near: np.ndarray) -> np.ndarray:
        """`near` [N,N]: neighbours within the radio range, reused when the sensing radius is the same."""
        same = self.cbf.sensing_radius == self.scenario.comm_radius
        return self.cbf(v_nom, pos, active, near if same else None)

    def _trace(self, trace: Trace, pos, v_safe, supply, active) -> None:
        w = self.world
        trace.pos.append(pos.copy())
        trace.vel.append(v_safe.copy())
        trace.supply.append(supply.copy())
        trace.demand.append(w.demand[0].numpy().copy())
        trace.active.append(active.copy())
        trace.assign.append(w.assign[0].numpy().copy())
