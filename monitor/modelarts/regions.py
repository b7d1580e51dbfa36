"""Region ids to endpoints, generated from the official SDK's region tables.

Written by ``scripts/generate_regions.py``; do not edit, run the script after upgrading the SDK.
Copied rather than imported so that the SDK is not a runtime dependency;
``tests/unit/modelarts/test_regions.py`` checks the copy against the installed SDK.
``IAM_SOURCE`` names the SDK table the IAM endpoints came from.
"""

from __future__ import annotations

__all__ = ["IAM_DEFAULT_ENDPOINT", "IAM_ENDPOINTS", "IAM_SOURCE", "MODELARTS_ENDPOINTS"]

IAM_SOURCE = "huaweicloudsdkcore.auth.endpoint"

MODELARTS_ENDPOINTS: dict[str, str] = {
    "af-north-1": "https://modelarts.af-north-1.myhuaweicloud.com",
    "af-south-1": "https://modelarts.af-south-1.myhuaweicloud.com",
    "ap-southeast-1": "https://modelarts.ap-southeast-1.myhuaweicloud.cn",
    "ap-southeast-2": "https://modelarts.ap-southeast-2.myhuaweicloud.com",
    "ap-southeast-3": "https://modelarts.ap-southeast-3.myhuaweicloud.com",
    "ap-southeast-4": "https://modelarts.ap-southeast-4.myhuaweicloud.com",
    "cn-east-3": "https://modelarts.cn-east-3.myhuaweicloud.com",
    "cn-east-4": "https://modelarts.cn-east-4.myhuaweicloud.com",
    "cn-north-1": "https://modelarts.cn-north-1.myhuaweicloud.com",
    "cn-north-11": "https://modelarts.cn-north-11.myhuaweicloud.com",
    "cn-north-12": "https://modelarts.cn-north-12.myhuaweicloud.com",
    "cn-north-2": "https://modelarts.cn-north-2.myhuaweicloud.com",
    "cn-north-4": "https://modelarts.cn-north-4.myhuaweicloud.com",
    "cn-north-9": "https://modelarts.cn-north-9.myhuaweicloud.com",
    "cn-south-1": "https://modelarts.cn-south-1.myhuaweicloud.com",
    "cn-southwest-2": "https://modelarts.cn-southwest-2.myhuaweicloud.com",
    "cn-southwest-3": "https://modelarts.cn-southwest-3.myhuaweicloud.com",
    "la-north-2": "https://modelarts.la-north-2.myhuaweicloud.com",
    "la-south-2": "https://modelarts.la-south-2.myhuaweicloud.com",
    "me-east-1": "https://modelarts.me-east-1.myhuaweicloud.com",
    "sa-brazil-1": "https://modelarts.sa-brazil-1.myhuaweicloud.com",
    "tr-west-1": "https://modelarts.tr-west-1.myhuaweicloud.com",
}
"""ModelArts endpoint per region id."""

IAM_ENDPOINTS: dict[str, str] = {
    "af-south-1": "https://iam.af-south-1.myhuaweicloud.com",
    "ap-southeast-1": "https://iam.ap-southeast-1.myhuaweicloud.com",
    "ap-southeast-2": "https://iam.ap-southeast-2.myhuaweicloud.com",
    "ap-southeast-3": "https://iam.ap-southeast-3.myhuaweicloud.com",
    "ap-southeast-4": "https://iam.ap-southeast-4.myhuaweicloud.com",
    "cn-east-3": "https://iam.cn-east-3.myhuaweicloud.com",
    "cn-east-4": "https://iam.cn-east-4.myhuaweicloud.com",
    "cn-north-1": "https://iam.cn-north-1.myhuaweicloud.com",
    "cn-north-12": "https://iam.cn-north-12.myhuaweicloud.com",
    "cn-north-2": "https://iam.cn-north-2.myhuaweicloud.com",
    "cn-north-4": "https://iam.cn-north-4.myhuaweicloud.com",
    "cn-north-9": "https://iam.cn-north-9.myhuaweicloud.com",
    "cn-south-1": "https://iam.cn-south-1.myhuaweicloud.com",
    "cn-southwest-2": "https://iam.cn-southwest-2.myhuaweicloud.com",
    "la-north-2": "https://iam.la-north-2.myhuaweicloud.com",
    "la-south-2": "https://iam.la-south-2.myhuaweicloud.com",
    "me-east-1": "https://iam.me-east-1.myhuaweicloud.com",
    "sa-brazil-1": "https://iam.sa-brazil-1.myhuaweicloud.com",
    "tr-west-1": "https://iam.tr-west-1.myhuaweicloud.com",
}
"""IAM endpoint per ModelArts region id that has a regional IAM."""

IAM_DEFAULT_ENDPOINT = "https://iam.myhuaweicloud.com"
"""The global IAM the SDK uses for a region its table does not list."""
