"""The one use case, list -> plan -> apply, over the ports in `cleaner.ports`."""

from cleaner.engine.core import Engine, Progress, SweepRequest, run
from cleaner.planning.model import Shard

__all__ = ["Engine", "Progress", "Shard", "SweepRequest", "run"]
