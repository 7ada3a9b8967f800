"""The Lambda in-use source: container-image functions, and the versions they can run.

For every function of package type Image (ListFunctions; the type is not filterable
server-side, so every page is read) whose name the `lambda:` section matches: `$LATEST`,
every version an alias points to (its weighted second version included), and the newest N
published versions, the targets of an alias rollback. For each, GetFunction gives both
`Code.ImageUri`, the reference as deployed (often a tag), and `Code.ResolvedImageUri`, the
digest Lambda resolved and runs. Both are protected: the tag keeps whatever image holds it
now, the digest keeps the image the function actually runs after the tag has moved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cleaner.clients.retry import Backoff
from cleaner.in_use.aws import Account, RegionApi, bounded, collect, matches_any, open_apis
from cleaner.in_use.snapshots import Once, Refreshing
from cleaner.planning.references import InUse, Use, parse_reference
from cleaner.planning.sources import LambdaSection
from cleaner.ports import InUseSource

LATEST = "$LATEST"


class LambdaLook:
    def __init__(self, section: LambdaSection, apis: Sequence[RegionApi]) -> None:
        self.section, self._apis = section, apis

    async def __call__(self) -> InUse:
        uses: list[Use] = []
        for region in self._apis:
            functions = await collect(region.api, "ListFunctions", "Functions", cursor="Marker",
                                      reply_cursor="NextMarker", MaxItems=50)  # fmt: skip
            chosen = [
                f["FunctionName"]
                for f in functions
                if f.get("PackageType") == "Image"
                and matches_any(f["FunctionName"], self.section.functions)
            ]
            found = await bounded(self._function(region, name) for name in chosen)
            uses += [use for function_uses in found for use in function_uses]
        return InUse.of(uses)

    async def _function(self, region: RegionApi, name: str) -> list[Use]:
        qualifiers = await self._qualifiers(region, name)
        uses: list[Use] = []
        for qualifier, users in sorted(qualifiers.items()):
            answer = await region.api.call("GetFunction", FunctionName=name, Qualifier=qualifier)
            code = answer.get("Code") or {}
            for text in (code.get("ImageUri"), code.get("ResolvedImageUri")):
                ref = parse_reference(text)
                if ref is not None:
                    uses += [Use(ref, who) for who in users]
        return uses

    async def _qualifiers(self, region: RegionApi, name: str) -> dict[str, set[str]]:
        """Version -> who may run it: `lambda:fn:$LATEST`, `lambda:fn:live`, `lambda:fn:7`."""
        api = region.api
        wanted: dict[str, set[str]] = defaultdict(set)
        wanted[LATEST].add(f"lambda:{name}:{LATEST}")
        aliases = await collect(api, "ListAliases", "Aliases", cursor="Marker",
                                reply_cursor="NextMarker", FunctionName=name)  # fmt: skip
        for alias in aliases:
            weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            for version in [alias.get("FunctionVersion"), *weights]:
                if version:
                    wanted[str(version)].add(f"lambda:{name}:{alias.get('Name', '')}")
        keep = self.section.versions
        if keep:
            versions = await collect(api, "ListVersionsByFunction", "Versions", cursor="Marker",
                                     reply_cursor="NextMarker", FunctionName=name)  # fmt: skip
            published = (v.get("Version", "") for v in versions)
            numbered = sorted((int(v) for v in published if v.isdigit()), reverse=True)
            for number in numbered[:keep]:
                wanted[str(number)].add(f"lambda:{name}:{number} (newest {keep})")
        return wanted


@asynccontextmanager
async def open_source(
    section: LambdaSection,
    account: Account,
    *,
    watch: bool,
    backoff: Backoff | None = None,
) -> AsyncIterator[InUseSource]:
    regions = account.regions_for(section.regions)
    async with open_apis("lambda", regions, role=account.role, backoff=backoff) as apis:
        look = LambdaLook(section, apis)
        name = account.source_name("lambda", regions)
        if not watch:
            yield Once(name, account.labelled(look))
            return
        async with Refreshing(name, account.labelled(look)).running() as refreshing:
            yield refreshing
