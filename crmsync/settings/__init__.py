"""Each service's settings class, one module per service: the service's composition root
loads it, and the CLI reads the same classes (``config reference``, ``run``, ``sync``).
The base they extend and the loader are in :mod:`crmsync.common.settings`."""
