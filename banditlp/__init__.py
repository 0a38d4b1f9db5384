"""Project-wide base types shared by every package (only the error hierarchy lives here)."""

__version__ = "0.1.0"
