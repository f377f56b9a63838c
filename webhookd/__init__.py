"""webhookd: durable, signed webhook delivery from a Redis stream."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhookd.publisher import Publisher

__all__ = ["Publisher", "__version__"]


def __getattr__(name: str) -> object:
    """``webhookd.Publisher`` without importing redis-py for ``webhookd.verify``'s sake:
    receivers use that module with the standard library alone."""
    if name == "Publisher":
        from webhookd.publisher import Publisher

        return Publisher
    raise AttributeError(f"module 'webhookd' has no attribute {name!r}")
