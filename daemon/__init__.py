"""passeur core: exchange files, the durable queue, delivery and sources (no GUI imports)."""

__version__ = "0.1.0"
