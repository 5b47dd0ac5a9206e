"""Issue 15's fault suite: real processes on an isolated Kafka and PostgreSQL, one fault
injected mid-stream, then every acknowledged event counted through to the target CRM.

`tests/e2e/test_faults.py` runs each scenario at a small size; `scripts/faults` runs them
at full size and prints a table per fault.
"""
