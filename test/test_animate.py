"""Missions you can watch: `lgtc sim --animate` and `lgtc replay BAG --animate` render a video
(GIF through Pillow here; .mp4 needs ffmpeg), and the drawing shows what the mission did."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from lgtc_ros.animate import Frames, at_consumer, check_path, from_recording, ticks_to_draw, write
from lgtc_ros.cli import main

SMALL = {
    "name": "reach_3x1", "n_agents": 3, "n_consumers": 1,
    "resources": [{"name": "kit", "kind": "instantaneous"}, {"name": "cell", "kind": "persistent"}],
    "episode_steps": 40, "v_max": 1.0, "consumer_radius": 0.25,
    "random": {"demand_types_per_consumer": 2, "demand_range": [0.6, 0.9], "supply_types_per_agent": 1,
               "supply_range": [0.1, 0.3]},
}


def frames(t_count: int = 20, n: int = 3, m: int = 2) -> Frames:
    rng = np.random.default_rng(0)
    pos = rng.uniform(-0.8, 0.8, (t_count, n, 2))
    return Frames(np.arange(t_count) * 0.05, pos, np.ones((t_count, n), bool), np.zeros((t_count, n), int),
                  np.broadcast_to(rng.uniform(-0.5, 0.5, (m, 2)), (t_count, m, 2)), np.ones((t_count, m)),
                  1.0, 0.15, 0.1, "colour: test")


def test_the_video_plays_at_the_asked_speed():
    f = frames(t_count=201)  # 10 s of mission at 20 Hz
    assert len(ticks_to_draw(f, fps=10, speed=4)) == 26  # 10 s / 4 = 2.5 s of video: 25 frames + the first
    assert len(ticks_to_draw(f, fps=10, speed=1)) == 101
    assert ticks_to_draw(f, fps=20, speed=1).tolist() == list(range(201))  # never more frames than ticks
    with pytest.raises(ValueError, match="no ticks"):
        ticks_to_draw(frames(t_count=0), 10, 4)


def test_a_gif_has_one_frame_per_drawn_tick(tmp_path):
    path = write(frames(t_count=40), tmp_path / "m.gif", "test", fps=10, speed=1)
    with Image.open(path) as im:
        assert im.n_frames == 20


def test_only_mp4_and_gif(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        check_path(tmp_path / "m.avi")


def test_a_drone_without_a_recorded_choice_takes_the_colour_of_the_consumer_it_is_at():
    consumers = np.array([[[0.0, 0.0], [0.5, 0.5]]])
    pos = np.array([[[0.05, 0.0], [0.5, 0.6], [-0.9, -0.9], [np.nan, np.nan]]])
    assert at_consumer(pos, consumers, 0.15).tolist() == [[0, 1, -1, -1]]


def test_sim_and_replay_animate_a_mission(tmp_path, capsys):
    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(SMALL))
    video, bag = tmp_path / "sim.gif", tmp_path / "bag"
    assert main(["sim", "--scenario", str(scenario), "--episodes", "1", "--animate", str(video),
                 "--animate-speed", "1", "--record", str(bag), "--quiet"]) == 0
    with Image.open(video) as im:
        assert im.n_frames >= 15  # 40 ticks = 2 s at 10 fps
    assert main(["replay", str(bag), "--animate", "--animate-speed", "1", "--quiet"]) == 0
    with Image.open(tmp_path / "bag_report" / "mission.gif") as im:
        assert im.n_frames >= 15
    # nothing written over: the same video again needs --force
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--scenario", str(scenario), "--episodes", "1", "--animate", str(video), "--quiet"])
    assert exc.value.code == 2 and "--force" in capsys.readouterr().err


def test_a_recording_without_radii_in_its_metadata_needs_the_scenario():
    class Rec:
        meta = {"comm_radius": 1.0}
        t = np.zeros(1)
        pos = np.zeros((1, 1, 2))
        active = np.ones((1, 1), bool)
        choice = np.zeros((1, 1), int)
        consumer_pos = np.zeros((1, 1, 2))
        demand = np.zeros((1, 1, 1))

    with pytest.raises(ValueError, match="consumer_radius"):
        from_recording(Rec())
