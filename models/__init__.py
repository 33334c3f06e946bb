"""Model steps: the model repository, model configs and backends."""

__all__: list[str] = []
