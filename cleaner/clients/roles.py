"""IAM roles assumed with STS AssumeRole, for sweeping other accounts' registries.

The cleaner's own credentials come from the standard chain (IRSA, Pod Identity, a profile);
each `--role-arn` (or policy `targets:` role) is assumed from them, so one deployment can
sweep every member account of an organisation that trusts it (the member-role template in
`k8s/aws/member-role.yaml`).
"""

from __future__ import annotations

from typing import Any

from cleaner.clients.aws import AwsApi, ErrorType, as_utc, open_client, refreshable_credentials
from cleaner.errors import CleanerError, CredentialsError

SESSION_NAME = "ecr-cleaner"
"""The role session name: CloudTrail in the member account shows who made each call."""
SESSION_SECONDS = 3600
"""What AssumeRole grants by default and every role allows; botocore refreshes the
credentials 15 minutes before they expire (its advisory refresh window)."""


class AssumedRole:
    """An IAM role assumed with STS AssumeRole from the standard chain, and its credentials.

    One per role, shared by every client that acts in the role's account (ECR in each
    region, ECS, Lambda), so a target costs one AssumeRole, not one per client. The
    credentials are botocore's refreshable kind: the first call assumes the role, and a call
    that finds them near expiry assumes it again, so a long sweep and the receiver never
    sign with expired keys (AWS STS API reference, AssumeRole).
    """

    def __init__(self, arn: str, *, external_id: str | None = None, region: str | None = None):
        self.arn, self.external_id, self.region = arn, external_id, region
        self.credentials = refreshable_credentials(self._assume, method="assume-role")
        self.assumed = 0
        """How many times the role was assumed (the first time, then each refresh)."""

    async def _assume(self) -> dict[str, str]:
        params: dict[str, Any] = {
            "RoleArn": self.arn,
            "RoleSessionName": SESSION_NAME,
            "DurationSeconds": SESSION_SECONDS,
        }
        if self.external_id:
            params["ExternalId"] = self.external_id
        async with open_client("sts", region=self.region) as client:
            api = AwsApi(client, error=_role_error(self.arn))
            reply = await api.call("AssumeRole", **params)
        self.assumed += 1
        granted = reply["Credentials"]
        return {
            "access_key": granted["AccessKeyId"],
            "secret_key": granted["SecretAccessKey"],
            "token": granted["SessionToken"],
            "expiry_time": as_utc(granted["Expiration"]).isoformat(),
        }


def _role_error(arn: str) -> ErrorType:
    def make(message: str, *, code: str, operation: str) -> CleanerError:
        return CredentialsError(f"cannot assume {arn}: {message}", code=code, operation=operation)

    return make
