"""Data package: the SGLang patch set (see README.md in each version folder)."""
