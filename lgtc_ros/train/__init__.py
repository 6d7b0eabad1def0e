"""Trainers: LGTC-IPPO / IPPO (ippo.py) and shared plumbing (runner.py)."""
