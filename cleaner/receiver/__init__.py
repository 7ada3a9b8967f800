"""The push receiver: deliveries in, coalesced prunes out.

Module map: `events` (pure parsing), `intake` (the `Intake` port: parse, scope, dedupe,
schedule), `scheduler` (coalescing), `http` (the aiohttp edge, `make_app(deps)`), `sqs` (the
queue edge: an SQS consumer feeding the same intake), `auth`,
`metrics`, `openapi`, `pruner` (the engine behind the scheduler's `Pruner` port) and `serve`
(signals and the process lifetime). aiohttp is imported only by `http` and `serve`. Nothing
is re-exported here, so importing the pure modules stays cheap.
"""
