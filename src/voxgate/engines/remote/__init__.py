"""Upstream TTS servers as engines (issue 17): see base.py for the interface each kind implements."""
