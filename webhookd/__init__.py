"""webhookd: durable, signed webhook delivery from a Redis stream."""

__version__ = "0.1.0"
