"""The pronunciation lexicon as dialects see it (they import the core, not text/): see text/lexicon.py."""

from voxgate.text.lexicon import MAX_ENTRIES, Entry, Lexicon, PhonemesNotAccepted

__all__ = ["MAX_ENTRIES", "Entry", "Lexicon", "PhonemesNotAccepted"]
