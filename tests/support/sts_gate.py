"""An STS endpoint in front of moto's, on a real socket, that can refuse a role.

moto assumes any role ARN it is asked for (and then keeps that account's resources apart,
which is what the targets tests need); it cannot be told to deny one. This gate passes
every request through to moto unchanged, except AssumeRole for a refused ARN, which gets
STS's own AccessDenied answer in the query protocol's XML error shape (STS API reference,
"Common Errors"). It records each AssumeRole it sees, so a test can count them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from tests.support.servers import loopback

DENIED = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User is not authorized to perform: sts:AssumeRole on resource: {arn}</Message>
  </Error>
  <RequestId>4bd2d1ea-0000-4000-8000-000000000000</RequestId>
</ErrorResponse>
"""


@dataclass
class StsGate:
    upstream: str
    refused: set[str] = field(default_factory=set)
    assumed: list[dict[str, str]] = field(default_factory=list)
    """The parameters of each AssumeRole request, refused or passed on."""
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("Action") == "AssumeRole":
            self.assumed.append(form)
            if form.get("RoleArn") in self.refused:
                text = DENIED.format(arn=form["RoleArn"])
                return web.Response(status=403, text=text, content_type="text/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream + request.path_qs, data=body, headers=headers) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )


@asynccontextmanager
async def sts_gate(upstream: str) -> AsyncIterator[StsGate]:
    gate = StsGate(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gate.handle)
    async with loopback(app) as gate.url:
        yield gate
