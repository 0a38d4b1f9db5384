"""Project-wide base types shared by every package: the error hierarchy (``banditlp.errors``) and
array type aliases (``banditlp.arrays``)."""

__version__ = "0.1.0"
