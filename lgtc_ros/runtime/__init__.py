"""ROS-free swarm runtime: the per-drone decision (`onboard`), the policy call (`drone`), the
emulated radio (`radio`), the mission world a ROS graph talks to (`plant`), the whole swarm on
simulated time (`swarm`), and keeping full garbage collections out of its ticks (`heap`).

Import the submodule you need: this package imports nothing itself, so a node process that
imports `lgtc_ros.runtime.radio` or `.onboard` does not load the batched simulator, the
evaluation meters or the CBF's QP solver (test/test_imports.py keeps it so).
"""
