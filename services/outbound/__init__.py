"""Outbound: pushes committed changes to every other connected system."""
