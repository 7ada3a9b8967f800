"""The project's own error hierarchy, every family in one place.

Adapters translate library exceptions (botocore, aiohttp, kubernetes) into these at the
boundary, so the engine and the CLI never depend on an SDK's exception types. The CLI maps
them to exit codes in one place: `ConfigError` is 2 (bad input, nothing was touched), every
other `CleanerError` is 1.

    CleanerError
      ConfigError            bad flags, environment or files; exit 2
        PolicyError          a policy file or lifecycle policy that fails validation
      RegistryError          a registry call failed after retries
        RepositoryNotFoundError
      InUseError             an in-use source could not tell what runs: fail closed
      CredentialsError       an IAM role could not be assumed
      ClusterError           a Kubernetes API could not be configured, reached or read
      LeaseBusy, LeaseLost   per-repository coordination
      QueueError             an SQS call failed after retries (the queue intake)
      InvalidRequest         a delivery or request body that cannot be acted on (HTTP 400)
      Rejected               no work can be taken now, retry later (HTTP 429/503)
        BacklogFull, ShuttingDown
"""

from __future__ import annotations


class CleanerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(CleanerError):
    """Bad input: a policy file, a flag, an environment setting. Exit code 2."""


class PolicyError(ConfigError):
    """A lifecycle policy or policy file that fails validation; the message names the entry.

    `problems` holds every problem found, each a line naming its location; the message is
    the first of them (and how many more), so that anything printing one line stays one.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)

    @classmethod
    def gathered(cls, problems: list[str] | tuple[str, ...]) -> PolicyError:
        more = len(problems) - 1
        first = problems[0] if problems else "invalid policy"
        return cls(f"{first} (and {more} more)" if more else first, tuple(problems))


class RegistryError(CleanerError):
    """A registry call failed after retries."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class RepositoryNotFoundError(RegistryError):
    """The repository does not exist (or is not visible with these credentials)."""


class CredentialsError(CleanerError):
    """An IAM role could not be assumed; every call in its account fails with it."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class InUseError(CleanerError):
    """An in-use source could not say what runs; nothing may be deleted blind."""

    def __init__(
        self, message: str, *, source: str = "", code: str = "", operation: str = ""
    ) -> None:
        super().__init__(message)
        self.source = source
        self.code = code
        self.operation = operation


class ClusterError(CleanerError):
    """A Kubernetes cluster could not be configured, reached or listed.

    With in-use protection on, this fails the prune closed: nothing is deleted blind.
    """

    def __init__(self, message: str, *, cluster: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.status = status


class QueueError(CleanerError):
    """An SQS call of the queue intake failed after retries."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class LeaseBusy(CleanerError):
    """Another holder kept the repository's Lease for longer than we were willing to wait."""

    def __init__(self, repository: str, holder: str) -> None:
        super().__init__(f"{repository}: another prune holds the lease ({holder})")
        self.repository = repository
        self.holder = holder


class LeaseLost(CleanerError):
    """The Lease could not be renewed (taken over or unreachable); the prune was cancelled."""


class InvalidRequest(CleanerError, ValueError):
    """A body (an event or a prune request) that cannot be acted on; the message says why."""


class Rejected(CleanerError):
    """New work was refused; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BacklogFull(Rejected):
    """Too much work is waiting (HTTP 429)."""


class ShuttingDown(Rejected):
    """The scheduler is draining and takes no new work (HTTP 503)."""
