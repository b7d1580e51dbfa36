"""Write ``monitor/modelarts/regions.py`` from the official SDK's region tables.

Why a generator: the SDK knows which regions ModelArts runs in and where each region's IAM is,
but it is far too heavy to be a runtime dependency of the daemon. So the tables are copied into
the package by this script, and ``tests/unit/modelarts/test_regions.py`` fails when the copy
and the installed SDK disagree (run this script after upgrading the SDK).

Sources, read from their static tables only (never from the SDK's environment or profile
providers, which would bake one machine's settings into the package):

* ModelArts: ``huaweicloudsdkmodelarts.v1.region.modelarts_region.ModelArtsRegion.static_fields``.
* IAM: ``huaweicloudsdkiam.v3.region.iam_region.IamRegion`` when that SDK is installed; else the
  core's table that ``huaweicloudsdkcore.auth.internal.IamHelper.get_iam_endpoint`` resolves a
  region with (``huaweicloudsdkcore.auth.endpoint``), whose fallback for a region it does not
  list is the global ``IamHelper.DEFAULT_ENDPOINT``. Either way the SDK's own answer is copied.

Usage: ``python scripts/generate_regions.py [--check]``; ``--check`` exits 1 when the file is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "monitor" / "modelarts" / "regions.py"

HEADER = '''"""Region ids to endpoints, generated from the official SDK's region tables.

Written by ``scripts/generate_regions.py``; do not edit, run the script after upgrading the SDK.
Copied rather than imported so that the SDK is not a runtime dependency;
``tests/unit/modelarts/test_regions.py`` checks the copy against the installed SDK.
``IAM_SOURCE`` names the SDK table the IAM endpoints came from.
"""

from __future__ import annotations

__all__ = ["IAM_DEFAULT_ENDPOINT", "IAM_ENDPOINTS", "IAM_SOURCE", "MODELARTS_ENDPOINTS"]
'''


def modelarts_endpoints() -> dict[str, str]:
    from huaweicloudsdkmodelarts.v1.region.modelarts_region import ModelArtsRegion

    fields = ModelArtsRegion.static_fields
    # The first of ``endpoints`` (``endpoint`` is deprecated); each region has one in 3.1.219.
    return {region: fields[region].endpoints[0] for region in sorted(fields)}


def iam_endpoints(regions: list[str]) -> tuple[dict[str, str], str, str]:
    """``(endpoint per region, default endpoint, source)`` as the SDK resolves IAM."""
    from huaweicloudsdkcore.auth.internal import IamHelper

    default = IamHelper.DEFAULT_ENDPOINT
    try:
        iam_region = importlib.import_module("huaweicloudsdkiam.v3.region.iam_region")
    except ImportError:
        from huaweicloudsdkcore.auth import endpoint

        table = {r: endpoint.get_iam_endpoint_by_id(r) for r in regions}
        source = "huaweicloudsdkcore.auth.endpoint"
    else:
        fields = iam_region.IamRegion.static_fields
        table = {r: fields[r].endpoints[0] for r in regions if r in fields}
        source = "huaweicloudsdkiam.v3.region.iam_region"
    return {r: e for r, e in sorted(table.items()) if e}, default, source


def render() -> str:
    modelarts = modelarts_endpoints()
    iam, default, source = iam_endpoints(list(modelarts))
    lines = [
        HEADER,
        f"IAM_SOURCE = {json.dumps(source)}",
        "",
        "MODELARTS_ENDPOINTS: dict[str, str] = {",
    ]
    lines += [f"    {json.dumps(r)}: {json.dumps(e)}," for r, e in modelarts.items()]
    lines += ["}", '"""ModelArts endpoint per region id."""', ""]
    lines += ["IAM_ENDPOINTS: dict[str, str] = {"]
    lines += [f"    {json.dumps(r)}: {json.dumps(e)}," for r, e in iam.items()]
    lines += ["}", '"""IAM endpoint per ModelArts region id that has a regional IAM."""', ""]
    lines += [f"IAM_DEFAULT_ENDPOINT = {json.dumps(default)}"]
    lines += ['"""The global IAM the SDK uses for a region its table does not list."""', ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run scripts/generate_regions.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
