"""The local stack without Docker: Kafka from Maven Central jars, PostgreSQL from the OS.

Used by ``crmsync infra``; services never import it.
"""
