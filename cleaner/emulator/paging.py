"""Stable, resumable ordering and nextToken pagination.

Every element gets a sequence number when it is added. A token is the (sequence, offset) of
the next item plus a fingerprint of the request, so resuming is a bisect, a full walk over
100k images stays linear, and deletions between pages never repeat or skip survivors.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from cleaner.emulator.validation import Body, invalid, max_results

Entries = Callable[[int], Iterator[tuple[int, list[Body]]]]
"""Given a start sequence number: (sequence, items of that element), in order."""


class SeqIndex:
    """Keys in insertion order, iterable from any sequence number.

    Removal leaves a tombstone; tombstones are compacted once they outnumber live keys, so
    both removal and a full iteration stay amortised linear.
    """

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._seqs: list[int] = []
        self._live: dict[str, int] = {}
        self._next = 0

    def add(self, key: str) -> int:
        seq = self._next
        self._next += 1
        self._keys.append(key)
        self._seqs.append(seq)
        self._live[key] = seq
        return seq

    def remove(self, key: str) -> None:
        del self._live[key]
        if len(self._keys) > 1024 and len(self._keys) > 2 * len(self._live):
            kept = [i for i, k in enumerate(self._keys) if self._live.get(k) == self._seqs[i]]
            self._keys = [self._keys[i] for i in kept]
            self._seqs = [self._seqs[i] for i in kept]

    def iter_from(self, seq: int = 0) -> Iterator[tuple[int, str]]:
        for i in range(bisect.bisect_left(self._seqs, seq), len(self._keys)):
            key, s = self._keys[i], self._seqs[i]
            if self._live.get(key) == s:
                yield s, key

    def __len__(self) -> int:
        return len(self._live)


def paginate(
    body: Body, scope: str, entries: Entries, *, default: int, maximum: int
) -> tuple[list[Body], str | None]:
    """One page of `entries` (maxResults from `body`) and the token for the next, if any."""
    limit = max_results(body, default, maximum)
    start, skip = decode_token(body.get("nextToken"), scope)
    out: list[Body] = []
    for seq, items in entries(start):
        for k in range(skip if seq == start else 0, len(items)):
            if len(out) == limit:
                return out, encode_token(scope, seq, k)
            out.append(items[k])
    return out, None


def _fingerprint(scope: str) -> int:
    # Ties a token to the listing it came from, so it cannot resume a different one.
    return zlib.crc32(scope.encode())


def encode_token(scope: str, seq: int, offset: int) -> str:
    raw = json.dumps([_fingerprint(scope), seq, offset]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: Any, scope: str) -> tuple[int, int]:
    if token is None:
        return 0, 0
    try:
        fingerprint, seq, offset = json.loads(base64.urlsafe_b64decode(str(token)))
        if fingerprint == _fingerprint(scope) and int(seq) >= 0 and int(offset) >= 0:
            return int(seq), int(offset)
    except (ValueError, TypeError, binascii.Error):
        pass
    raise invalid(
        "Invalid parameter at 'nextToken' failed to satisfy constraint: "
        "'The token is invalid for this request'"
    )
