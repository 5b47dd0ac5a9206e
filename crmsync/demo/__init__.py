"""The demo and `crmsync simulate`: provider simulators connected to a tenant."""
