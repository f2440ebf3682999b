"""One module per ``mcdrop`` sub-command; each exposes ``register(subparsers)``."""
