"""Processing algorithms of the Heritage provider (filled as the backend grows)."""

from __future__ import annotations


def all_algorithms() -> list:
    """Fresh instances of every Heritage algorithm."""
    return []
