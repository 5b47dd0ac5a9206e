"""Processor: faust-streaming agents turning raw webhooks and changes into records."""
