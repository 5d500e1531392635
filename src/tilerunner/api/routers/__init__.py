"""API routers, one module per resource; each module exposes ``router``."""
