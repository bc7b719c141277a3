"""Applications built on mom, to show how it is used (run them from the repository root)."""
