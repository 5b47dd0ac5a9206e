"""Admin: the operator API behind scoped API keys."""
