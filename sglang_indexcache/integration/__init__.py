"""The only code that touches SGLang internals: plugin entry point, schedule hook, patch set."""
