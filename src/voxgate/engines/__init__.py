"""Engine plugins behind one small blocking interface (see base.py)."""
