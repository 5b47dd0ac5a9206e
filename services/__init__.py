"""The four crmsync services. None imports another; they share ``crmsync.common``."""
