"""Wording shared by messages, reports and model cards, so each count reads the same everywhere."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 step``, ``4 steps``: counts in messages read as English (``nouns``: an irregular plural)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"
