"""Policies: the LGTC network, its actor/critic heads, export for one drone."""
