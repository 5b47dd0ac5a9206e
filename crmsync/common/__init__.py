"""Runtime helpers shared by every service: settings, logging, Postgres, Kafka, metrics.

Kept small on purpose; nothing here imports a service, a connector or the CLI.
"""
