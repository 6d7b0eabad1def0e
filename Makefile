# Two commands do all set-up on a fresh clone: `make demo` and `make test`. Both are idempotent:
# stamp files in .venv record what is installed, so a second run skips straight to the work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LGTC   := $(VENV)/bin/lgtc
TORCH  := torch==2.13.0
# ROS 2 Jazzy's rclpy and the message packages the nodes use, as pip wheels (CPython 3.11, Fast DDS):
# the node tests run the real graph. Not `launch`, `ros2 bag`, tf2 or Crazyswarm2: README, "ROS 2".
ROS_PIP := "ros-jazzy-rclpy[fastrtps]" ros-jazzy-std-msgs ros-jazzy-geometry-msgs ros-jazzy-std-srvs

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build on disk: any later `torch>=...` is then already satisfied,
# so pip never pulls a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	touch $@

# A sourced ROS 2 (ROS_DISTRO set) or an rclpy this interpreter already imports wins: a lab
# machine's own ROS 2 is never shadowed by the pip wheels.
$(VENV)/.ros: | $(PY)
	@if [ -n "$$ROS_DISTRO" ] || $(PY) -c "import rclpy" 2>/dev/null; then \
		echo "rclpy: using the ROS 2 already here (ROS_DISTRO=$$ROS_DISTRO)"; \
	else \
		$(PY) -m pip install --quiet $(ROS_PIP); \
	fi
	touch $@

$(VENV)/.installed: setup.py setup.cfg package.xml $(VENV)/.torch $(VENV)/.ros
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(LGTC) demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(LGTC) bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
