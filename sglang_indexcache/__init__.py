"""IndexCache for SGLang: reuse DSA top-k indices across layers, fail closed."""

__version__ = "0.1.0"
