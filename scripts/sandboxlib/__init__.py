"""The modules of ``scripts/sandbox.py`` (run that, not these)."""
