"""The shipped export recipes: data only (``*.toml``), read through :mod:`importlib.resources`."""
