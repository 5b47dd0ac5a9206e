"""Issue 17's randomized convergence test: a seeded plan of operations over every kind and
every simulated CRM plus the internal service, with injected faults; at the end every
system must hold the same records (``python -m tests.convergence``, ``scripts/converge``)."""
