"""The one aiobotocore factory, and the call discipline every AWS adapter shares.

Nothing else in the project imports aiobotocore or botocore. `open_client` builds a client
from the standard AWS chain (env, profile, IRSA or Pod Identity, `AWS_ENDPOINT_URL_<SERVICE>`)
with botocore's own retries off; `AwsApi` wraps it so that every attempt is paced by the
adaptive limiter, counted by the call hook, retried by `cleaner.clients.retry`, and every
failure leaves as the adapter's own error type.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from cleaner.clients.ratelimit import AdaptiveLimiter, Limiter
from cleaner.clients.retry import Backoff, retrying
from cleaner.errors import CleanerError, ConfigError, CredentialsError

if TYPE_CHECKING:
    from cleaner.clients.roles import AssumedRole

log = logging.getLogger(__name__)

CallHook = Callable[[str, str], None]
"""`hook(operation, outcome)` hears every attempt; outcome is ok, throttled or error."""

# Codes botocore's own retry logic treats as throttling (botocore/retries/standard.py),
# plus the ones AWS services and their proxies are seen to send.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
# Answers meaning "this endpoint does not implement the operation". AWS JSON services answer
# UnknownOperationException; LocalStack answers 501; moto's server crashes with an HTML 500
# page that carries no AWS error code at all (botocore then uses the status as the code).
UNSUPPORTED_CODES = frozenset(
    {
        "UnknownOperationException",
        "InvalidAction",
        "NotImplemented",
        "NotImplementedException",
        "UnsupportedOperation",
        "UnsupportedOperationException",
    }
)


class ErrorType(Protocol):
    """An adapter's error class: `RegistryError`, `InUseError`, ..."""

    def __call__(self, message: str, *, code: str, operation: str) -> CleanerError: ...


def error_code(error: BaseException) -> str:
    """The AWS error code of a failed call, or "" when it carries none."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(error: BaseException) -> int:
    if isinstance(error, ClientError):
        return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_throttled(error: BaseException) -> bool:
    return error_code(error) in THROTTLING_CODES or http_status(error) == 429


def is_transient(error: BaseException) -> bool:
    """Throttling, server faults and dropped connections are worth another try."""
    if isinstance(error, ClientError):
        return is_throttled(error) or http_status(error) >= 500
    return isinstance(
        error, ConnectionError | ConnectionClosedError | HTTPClientError | ReadTimeoutError
    )


def is_unsupported(error: BaseException) -> bool:
    """Did the endpoint answer that it does not implement the operation?"""
    if not isinstance(error, ClientError):
        return False
    code, status = error_code(error), http_status(error)
    no_aws_code = code == str(status)  # a bare HTTP error page, not an AWS error shape
    return code in UNSUPPORTED_CODES or status == 501 or (no_aws_code and status in (404, 500))


def outcome_of(error: BaseException) -> str:
    """How a failed attempt is counted: throttled, or any other error."""
    return "throttled" if is_throttled(error) else "error"


def parse_timestamp(value: object) -> datetime:
    """Epoch seconds (what the JSON protocols send) fast, anything else the way botocore would."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromtimestamp(float(str(value)), UTC)
    except ValueError:
        return as_utc(botocore_parse_timestamp(value))


def as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


Fetch = Callable[[], Awaitable[dict[str, str]]]
"""Returns access_key, secret_key, token and expiry_time (ISO 8601), as botocore wants."""


def refreshable_credentials(fetch: Fetch, *, method: str) -> Any:
    """botocore's refreshable credentials: fetched on first use, and again when a call finds
    them within 15 minutes of expiry, under a lock, so concurrent calls share one fetch."""
    return AioDeferredRefreshableCredentials(fetch, method=method)


class _Fixed:
    """A provider for botocore's credential resolver that always answers the same ones."""

    def __init__(self, credentials: Any, method: str) -> None:
        self._credentials, self.METHOD = credentials, method
        self.CANONICAL_NAME = method

    async def load(self) -> Any:
        return self._credentials


def _session(role: AssumedRole | None) -> AioSession:
    session = get_session()
    if role is not None:
        # The credential resolver is a documented session component; a role's holds one
        # provider, so no client acting as the role falls back to the caller's credentials.
        provider = _Fixed(role.credentials, "assume-role")
        session.register_component("credential_provider", AioCredentialResolver([provider]))
    return session


@asynccontextmanager
async def open_client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_connections: int = 10,
    access_key: str | None = None,
    secret_key: str | None = None,
    role: AssumedRole | None = None,
    read_timeout: float = 60,
) -> AsyncIterator[Any]:
    """An aiobotocore client for `service` from the standard chain, or acting as `role`;
    ConfigError if it cannot be built (no region, a bad profile, a bad endpoint URL).
    `read_timeout` bounds the wait for an answer; a long poll must set it above the time
    the server may hold the call."""
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},  # see cleaner/clients/retry.py
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=read_timeout,
    )
    session = _session(role)
    # botocore turns every timestamp into a dateutil tz object; the JSON protocols send epoch
    # seconds, and a sweep parses two per image (listing and re-verification). The factory's
    # documented hook swaps in a parser that is several times cheaper.
    factory = session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
    client_context = session.create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(client_context)
        except BotoCoreError as error:
            raise ConfigError(f"cannot create the {service} client: {error}") from error
        yield client


def default_region() -> str | None:
    """The region the AWS chain resolves (env, profile), as a client would use it."""
    region = get_session().get_config_variable("region")
    return str(region) if region else None


def _ignore_call(operation: str, outcome: str) -> None:
    pass


class AwsApi:
    """One client's calls: paced, counted, retried, and translated into `error`."""

    def __init__(
        self,
        client: Any,
        *,
        error: ErrorType,
        errors_by_code: Mapping[str, ErrorType] | None = None,
        backoff: Backoff | None = None,
        on_call: CallHook | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.client = client
        self._error = error
        self._errors_by_code = dict(errors_by_code or {})
        self._backoff = backoff or Backoff()
        self._on_call = on_call or _ignore_call
        # On by default: free until the first throttle (cleaner/clients/ratelimit.py).
        self._limiter = limiter if limiter is not None else AdaptiveLimiter()

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One operation, e.g. `call("DescribeImages", repositoryName=...)`."""
        method = getattr(self.client, snake_case(operation))
        try:
            return await self._retried(operation, method, params, is_transient)
        except (ClientError, BotoCoreError, CredentialsError) as error:
            raise self.translate(error, operation) from error

    async def call_optional(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """`call` for an operation the endpoint may lack: None then, and no retries for it."""
        method = getattr(self.client, snake_case(operation), None)
        if method is None:  # a botocore too old to know the operation
            return None
        try:
            return await self._retried(
                operation, method, params, lambda e: is_transient(e) and not is_unsupported(e)
            )
        except ClientError as error:
            if is_unsupported(error):
                log.debug("%s is not supported by this endpoint: %s", operation, error)
                return None
            raise self.translate(error, operation) from error
        except (BotoCoreError, CredentialsError) as error:
            raise self.translate(error, operation) from error

    async def pages(
        self,
        operation: str,
        *,
        cursor: str = "nextToken",
        reply_cursor: str | None = None,
        **params: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated operation: the answer's `reply_cursor` (default: the
        same name as the request's `cursor`) is sent back until it is absent. Lambda, for
        one, asks for `Marker` and answers `NextMarker`."""
        params = dict(params)
        reply = reply_cursor or cursor
        while True:
            page = await self.call(operation, **params)
            yield page
            if not page.get(reply):
                return
            params[cursor] = page[reply]

    def translate(self, error: Exception, operation: str) -> CleanerError:
        code = error_code(error)
        if isinstance(error, ClientError):
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            make = self._errors_by_code.get(code, self._error)
            return make(f"{operation}: {code}: {message}", code=code, operation=operation)
        if isinstance(error, CredentialsError):  # a role that could not be assumed
            return self._error(f"{operation}: {error}", code=error.code, operation=operation)
        return self._error(f"{operation}: {error}", code=type(error).__name__, operation=operation)

    async def _retried(
        self,
        operation: str,
        method: Callable[..., Any],
        params: Mapping[str, Any],
        retryable: Callable[[BaseException], bool],
    ) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            asked_at = await self._limiter.acquire(operation)
            try:
                result: dict[str, Any] = await method(**params)
            except Exception as error:
                outcome = outcome_of(error)
                self._limiter.report(operation, outcome, asked_at)
                self._on_call(operation, outcome)
                raise
            self._limiter.report(operation, "ok", asked_at)
            self._on_call(operation, "ok")
            return result

        return await retrying(attempt, retryable=retryable, backoff=self._backoff, what=operation)


def snake_case(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
