"""The project's own error hierarchy.

Adapters translate library exceptions (botocore, aiohttp, kubernetes) into these at the
boundary, so the engine and the CLI never depend on an SDK's exception types.
"""


class CleanerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(CleanerError):
    """Bad input: a policy file, a flag, an environment setting. Exit code 2."""


class PolicyError(ConfigError):
    """A lifecycle policy or policy file that fails validation; the message names the entry."""


class RegistryError(CleanerError):
    """A registry call failed after retries."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class RepositoryNotFoundError(RegistryError):
    """The repository does not exist (or is not visible with these credentials)."""


class ClusterError(CleanerError):
    """A Kubernetes cluster could not be configured, reached or listed.

    With in-use protection on, this fails the prune closed: nothing is deleted blind.
    """

    def __init__(self, message: str, *, cluster: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.status = status
