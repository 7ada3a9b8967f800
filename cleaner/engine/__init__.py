"""The one use case, list -> plan -> apply, over the ports in `cleaner.ports`."""

from cleaner.engine.core import Engine, Progress, Shard, SweepRequest, run

__all__ = ["Engine", "Progress", "Shard", "SweepRequest", "run"]
