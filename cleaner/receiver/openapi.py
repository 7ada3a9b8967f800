"""The OpenAPI 3.1 document served at /openapi.json, written by hand to match app.py.

tests/test_receiver_app.py checks that every route is documented and validates the answers
against these schemas, so a change to a handler that is not made here too fails a test.
"""

from __future__ import annotations

from typing import Any

from cleaner import __version__
from cleaner.planning.names import REPOSITORY_NAME_MAX, REPOSITORY_NAME_PATTERN
from cleaner.receiver.events import MAX_PRUNE_REPOSITORIES

JSON = "application/json"
Schema = dict[str, Any]
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Schema, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: Schema | None = None) -> Schema:
    return _json(description, _ref("Error"), headers)


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


UNAUTHORIZED = _error(
    "No valid token in `Authorization: Bearer` or `X-Api-Key`.",
    {"WWW-Authenticate": {"schema": {"type": "string"}}},
)
TOO_LARGE = _error("The body is larger than 256 KiB.")
BODY_TIMEOUT = _error("The body did not arrive in time (a stalled or very slow client).")
ENCODED = _error("The body has a Content-Encoding (gzip, ...): send it as plain JSON.")
BACKLOG_FULL = _error("Too much work is waiting; retry later.", RETRY_AFTER)
DRAINING = _error("The server is shutting down; retry later (another replica).", RETRY_AFTER)


SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "ready", "starting", "draining", "not ready"],
            },
            "reasons": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Why it is not ready (with `not ready`).",
            },
        },
    },
    "RepositoryName": {
        "type": "string",
        "minLength": 2,
        "maxLength": REPOSITORY_NAME_MAX,
        "pattern": f"^{REPOSITORY_NAME_PATTERN}$",
        "description": "An ECR repository name; may contain slashes (`team/app`).",
    },
    "EventBridgeEvent": {
        "type": "object",
        "description": "An EventBridge event, delivered unchanged (no input transformer).",
        "required": ["id", "source", "detail-type", "account", "region", "detail"],
        "properties": {
            "version": {"type": "string"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "examples": ["aws.ecr"]},
            "detail-type": {"type": "string", "examples": ["ECR Image Action"]},
            "account": {"type": "string"},
            "region": {"type": "string"},
            "time": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string"}},
            "detail": {
                "type": "object",
                "description": "For ECR Image Action events `action-type` and `result` are "
                "required, and a successful push needs a valid `repository-name`.",
                "properties": {
                    "action-type": {"type": "string", "examples": ["PUSH", "DELETE"]},
                    "result": {"type": "string", "examples": ["SUCCESS"]},
                    "repository-name": _ref("RepositoryName"),
                    "image-digest": {"type": "string"},
                    "image-tag": {"type": "string"},
                },
            },
        },
    },
    "DistributionEnvelope": {
        "type": "object",
        "description": "CNCF distribution's notification envelope (sent as "
        "`application/vnd.docker.distribution.events.v1+json`): a push of a manifest asks "
        "for a prune of `target.repository`; every other event is ignored.",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "action": {"type": "string", "examples": ["push", "pull", "delete"]},
                        "target": {
                            "type": "object",
                            "properties": {
                                "mediaType": {"type": "string"},
                                "repository": _ref("RepositoryName"),
                                "digest": {"type": "string"},
                                "tag": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "HarborWebhook": {
        "type": "object",
        "description": "Harbor's webhook, default payload format: `PUSH_ARTIFACT` asks for a "
        "prune of `event_data.repository.repo_full_name`; other types are ignored.",
        "required": ["type", "event_data"],
        "properties": {
            "type": {"type": "string", "examples": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]},
            "occur_at": {"type": "integer"},
            "event_data": {
                "type": "object",
                "required": ["repository"],
                "properties": {
                    "repository": {
                        "type": "object",
                        "properties": {"repo_full_name": _ref("RepositoryName")},
                    },
                    "resources": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "EventAccepted": {
        "type": "object",
        "required": ["status", "id", "repository"],
        "properties": {
            "status": {
                "type": "string",
                "enum": ["accepted", "coalesced"],
                "description": "`coalesced`: a prune of this repository was already pending.",
            },
            "id": {"type": "string"},
            "repository": _ref("RepositoryName"),
        },
    },
    "EventAcknowledged": {
        "type": "object",
        "required": ["status", "id"],
        "properties": {
            "status": {"type": "string", "enum": ["ignored", "duplicate"]},
            "id": {"type": "string"},
            "reason": {"type": "string"},
        },
    },
    "PruneRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "repositories": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_PRUNE_REPOSITORIES,
                "items": _ref("RepositoryName"),
                "description": "Omit to prune every repository the policy covers.",
            },
            "dry_run": {"type": "boolean", "default": False},
            "wait": {"type": "boolean", "default": False},
        },
    },
    "Image": {
        "type": "object",
        "required": ["digest", "tags", "pushed_at", "size", "reason"],
        "properties": {
            "digest": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "pushed_at": {"type": "string", "format": "date-time"},
            "size": {"type": "integer"},
            "reason": {"type": "string"},
        },
    },
    "RepositoryReport": {
        "type": "object",
        "required": ["repository", "keep", "expire", "deleted", "failed", "error"],
        "properties": {
            "repository": {"type": "string"},
            "keep": {"type": "array", "items": _ref("Image")},
            "expire": {"type": "array", "items": _ref("Image")},
            "deleted": {"type": "array", "items": {"type": "string"}},
            "failed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["digest", "code", "message"],
                    "properties": {
                        "digest": {"type": "string"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
            "error": _nullable({"type": "string"}),
        },
    },
    "Figures": {
        "type": "object",
        "description": "One repository's row of the summary, or (with `repositories` and "
        "`repository_errors` instead of `repository` and `error`) the total row.",
        "properties": {
            "repository": {"type": "string"},
            "repositories": {"type": "integer"},
            **{
                name: {"type": "integer"}
                for name in (
                    "images",
                    "keep",
                    "expire",
                    "kept_bytes",
                    "reclaimable_bytes",
                    "deleted",
                    "reclaimed_bytes",
                    "failed",
                    "repository_errors",
                )
            },
            "error": _nullable({"type": "string"}),
        },
    },
    "Summary": {
        "type": "object",
        "required": ["repositories", "total", "ages"],
        "properties": {
            "repositories": {"type": "array", "items": _ref("Figures")},
            "total": _ref("Figures"),
            "ages": {
                "type": "object",
                "description": "Images by time since push, per bucket.",
                "properties": {
                    "buckets": {"type": "array", "items": {"type": "string"}},
                    **{
                        name: {"type": "array", "items": {"type": "integer"}}
                        for name in ("keep", "expire", "kept_bytes", "expire_bytes")
                    },
                },
            },
        },
    },
    "Report": {
        "type": "object",
        "description": "The same document as `ecr-cleaner sweep --output json`.",
        "required": ["dry_run", "repositories", "summary"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "repositories": {"type": "array", "items": _ref("RepositoryReport")},
            "summary": _ref("Summary"),
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "state",
            "repositories",
            "dry_run",
            "submitted_at",
            "started_at",
            "finished_at",
            "report",
            "error",
        ],
        "properties": {
            "id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["queued", "running", "done", "error", "cancelled"],
            },
            "repositories": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Empty: every repository.",
            },
            "dry_run": {"type": "boolean"},
            "submitted_at": {"type": "string", "format": "date-time"},
            "started_at": _nullable({"type": "string", "format": "date-time"}),
            "finished_at": _nullable({"type": "string", "format": "date-time"}),
            "report": {
                **_nullable(_ref("Report")),
                "description": "Null until the job is done, and again once 20 newer jobs"
                " have finished: only the newest keep their whole reports.",
            },
            "error": _nullable({"type": "string"}),
        },
    },
}


def _events() -> Schema:
    return {
        "post": {
            "operationId": "receiveEvent",
            "summary": "Receive a push event: EventBridge, distribution or Harbor",
            "description": "A successful push is answered at once and its repository is "
            "pruned in the background, coalesced with other pushes to it. Every other "
            "well-formed event is acknowledged and ignored. A distribution envelope of "
            "several events gets one answer: the most that happened to any of them.",
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "anyOf": [
                                _ref("EventBridgeEvent"),
                                _ref("DistributionEnvelope"),
                                _ref("HarborWebhook"),
                            ]
                        }
                    }
                },
            },
            "responses": {
                "202": _json("A prune of the repository is pending.", _ref("EventAccepted")),
                "200": _json(
                    "Ignored (not a successful push, or another account/region) or a "
                    "redelivery of an event id already accepted.",
                    _ref("EventAcknowledged"),
                ),
                "400": _error("Not JSON, not an event, or an invalid repository name."),
                "401": UNAUTHORIZED,
                "408": BODY_TIMEOUT,
                "413": TOO_LARGE,
                "415": ENCODED,
                "429": BACKLOG_FULL,
                "503": DRAINING,
            },
        }
    }


def _prune() -> Schema:
    return {
        "post": {
            "operationId": "prune",
            "summary": "Prune now (manual trigger)",
            "requestBody": {"required": False, "content": {JSON: {"schema": _ref("PruneRequest")}}},
            "responses": {
                "200": _json("`wait`: the finished prune's report.", _ref("Report")),
                "202": _json(
                    "Queued; poll the job.",
                    _ref("Job"),
                    {"Location": {"schema": {"type": "string"}}},
                ),
                "400": _error("Malformed body, unknown field or invalid repository name."),
                "401": UNAUTHORIZED,
                "408": BODY_TIMEOUT,
                "413": TOO_LARGE,
                "415": ENCODED,
                "429": BACKLOG_FULL,
                "502": _error("`wait`: the prune failed (the registry could not be read)."),
                "503": DRAINING,
            },
        }
    }


def _job() -> Schema:
    return {
        "get": {
            "operationId": "getJob",
            "summary": "A manual prune's state and, once done, its report",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json("The job.", _ref("Job")),
                "401": UNAUTHORIZED,
                "404": _error("No such job (or forgotten: the newest 1000 are kept)."),
            },
        }
    }


def _plan() -> Schema:
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "Slashes may be sent as they are or percent-encoded.",
        "schema": _ref("RepositoryName"),
    }
    return {
        "get": {
            "operationId": "planRepository",
            "summary": "What the policy would keep and expire in one repository; deletes nothing",
            "parameters": [name],
            "responses": {
                "200": _json(
                    "A dry-run report; `repositories` is empty when no policy entry matches.",
                    _ref("Report"),
                ),
                "400": _error("Not a valid repository name."),
                "401": UNAUTHORIZED,
                "429": BACKLOG_FULL,
                "502": _error("The plan failed (the registry could not be read)."),
                "503": DRAINING,
            },
        }
    }


def _public(operation_id: str, summary: str, responses: Schema) -> Schema:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def _operations() -> dict[str, Schema]:
    status = _ref("Status")
    return {
        "/healthz": _public("healthz", "Liveness", {"200": _json("Alive.", status)}),
        "/readyz": _public(
            "readyz",
            "Readiness: 503 while starting, draining, or a dependency is not ready",
            {
                "200": _json("Ready.", status),
                "503": _json("Starting, draining, or not ready (see `reasons`).", status),
            },
        ),
        "/metrics": _public(
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text format (OpenMetrics when asked for).",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}},
                    },
                }
            },
        ),
        "/openapi.json": _public(
            "openapi",
            "This document",
            {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
    }


def openapi_document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ecr-cleaner push receiver",
            "version": __version__,
            "description": "Prunes a repository when its registry reports a push to it: "
            "EventBridge for ECR, or the notifications of distribution and Harbor.",
        },
        "security": [{"bearerAuth": []}, {"apiKey": []}],
        "paths": {
            "/events": _events(),
            "/prune": _prune(),
            "/jobs/{id}": _job(),
            "/repositories/{name}/plan": _plan(),
            **_operations(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }
