"""The project's one base error.

Each package defines its own kinds under it (``models.errors``, ``allocator.errors``,
``streams.errors``); the stream layer maps each kind to one fixed response
(dead-letter, skip, or stop).
"""


class BanditLPError(Exception):
    """Base of every error this project raises on purpose."""
