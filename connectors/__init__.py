"""One sub-package per provider: signature verification, mapping, API client, simulator.

Connectors import ``schemas`` and ``crmsync.common`` only, never a service; adding a
provider means adding a folder here.
"""
