"""One sub-package per provider: signature verification, mapping, API client, simulator.

Connectors import ``schemas`` and ``crmsync.common`` only, never a service; adding a
provider means adding a folder here. A provider's simulator (``<slug>/simulator.py``, on
``simkit``) is test and demo code: only ``simulators`` names it, and nothing a service
loads imports either (an import contract holds this).
"""
