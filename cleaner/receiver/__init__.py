"""The push receiver: EventBridge "ECR Image Action" events in, coalesced prunes out.

Module map: `events` (pure parsing), `scheduler` (coalescing, no aiohttp), `app` (the
aiohttp edge, `make_app(deps)`), `auth`, `metrics`, `logs`, `openapi`, `pruner` (the engine
behind the `Pruner` port) and `serve` (flags, signals, process lifetime). aiohttp is imported
only by `app` and `serve`. Nothing is re-exported here, so importing the pure modules stays
cheap: `from cleaner.receiver.serve import add_serve_arguments, run_serve`.
"""
