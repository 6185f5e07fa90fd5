"""Passes over the IR: plain functions, applied in the explicit order of :data:`DEFAULT_PIPELINE`."""
