"""Batched simulator of the multi-resource allocation Dec-POMDP (torch, [B, N, ...] tensors)."""
from lgtc_ros.world.env import StepResult, World, clip_speed
from lgtc_ros.world.observation import Observation, flat_layout, neighbour_mask
from lgtc_ros.world.rewards import TERMS

__all__ = ["World", "StepResult", "Observation", "TERMS", "clip_speed", "flat_layout", "neighbour_mask"]
