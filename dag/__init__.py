"""Pipelines: the YAML format, validation with source locations, the graph and the compiled plan."""

__all__: list[str] = []
