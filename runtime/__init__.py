"""The runtime: executor, batchers, the in-process Engine, the server frontends and the CLI."""

__all__: list[str] = []
