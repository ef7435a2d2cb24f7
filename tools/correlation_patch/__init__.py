"""The correlation patch as data and edit kinds; ``tools/apply_patch.py`` is its CLI."""
