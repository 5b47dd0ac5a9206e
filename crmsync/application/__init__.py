"""Admin operations: one implementation of each, used by the HTTP API and the CLI.

Every function takes a database connection and a :class:`Context` naming the tenant it
acts for; nothing here knows about HTTP or argparse. Refusals are ``AdminError``s.
"""
