"""The one catalogue of voices every dialect resolves names through."""
