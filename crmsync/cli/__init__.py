"""The ``crmsync`` command line: local stack, migrations, topics, running the services."""
