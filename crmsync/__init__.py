"""crmsync: the shared runtime (``crmsync.common``), the CLI and the local-stack manager."""

__version__ = "0.1.0"
