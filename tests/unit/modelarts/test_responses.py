"""Error answers of every shape become the typed error their status means, keeping the server's
code and a bounded excerpt of its words (``modelarts.responses``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from monitor.errors import (
    ApiError,
    AuthError,
    EndpointNotFound,
    JobNotFound,
    ServerError,
)
from monitor.modelarts.responses import raise_for_status


def raised(status: int, body: Any, content_type: str = "application/json") -> ApiError:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.Response(status, content=content, headers={"Content-Type": content_type})
    with pytest.raises(ApiError) as info:
        raise_for_status(response)
    return info.value


def test_a_gateway_404_for_an_api_not_at_this_endpoint_is_endpoint_not_found() -> None:
    body = {
        "error_code": "APIG.0101",
        "error_msg": "The API does not exist or has not been published in the environment",
        "request_id": "b1d0c9e8",
    }

    exc = raised(404, body)

    assert type(exc) is EndpointNotFound
    assert (exc.status, exc.error_code, exc.request_id) == (404, "APIG.0101", "b1d0c9e8")
    assert str(exc).startswith("no such API at this endpoint: The API does not exist")
    assert not isinstance(exc, JobNotFound)  # a wrong endpoint never makes a job look gone


def test_an_iam_shaped_error_keeps_its_code_and_message() -> None:
    body = {"error": {"code": 403, "message": "The user has no permission.", "title": "Forbidden"}}

    exc = raised(403, body)

    assert type(exc) is AuthError
    assert exc.error_code == "403"
    assert str(exc) == (
        "authentication rejected: The user has no permission. (status=403, error_code=403)"
    )


def test_an_iam_shaped_error_with_a_string_code_keeps_it() -> None:
    body = {"error": {"code": "IAM.0101", "message": "The token is invalid."}}

    exc = raised(401, body)

    assert (type(exc), exc.error_code) == (AuthError, "IAM.0101")
    assert "The token is invalid." in str(exc)


def test_a_plain_text_error_is_the_typed_error_of_its_status_with_its_text() -> None:
    exc = raised(503, b"upstream connect error or disconnect/reset before headers", "text/plain")

    assert type(exc) is ServerError
    assert exc.error_code is None
    assert "upstream connect error or disconnect/reset before headers" in str(exc)


def test_an_html_page_is_reduced_to_its_words_without_tags_or_scripts() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>404 Not Found</title>"
        b"<style>body { color: red; }</style><script>var x = '<b>';</script></head>"
        b"<body><center><h1>404 Not Found</h1></center><hr><center>nginx &amp; co</center>"
        b"</body></html>"
    )

    exc = raised(404, page, "text/html")

    assert type(exc) is EndpointNotFound
    assert str(exc) == (
        "no such API at this endpoint: 404 Not Found 404 Not Found nginx & co (status=404)"
    )


def test_a_long_error_message_is_cut_to_one_bounded_line() -> None:
    exc = raised(403, {"error_code": "ModelArts.0222", "error_msg": "denied\n" + "x" * 5000})

    message = str(exc)
    assert "\n" not in message
    assert len(message) < 300
    assert exc.error_code == "ModelArts.0222"


def test_a_numeric_error_code_is_no_code_and_never_means_the_job_is_gone() -> None:
    exc = raised(400, {"error_code": 2775, "error_msg": "Training job not found"})

    assert type(exc) is ApiError
    assert exc.error_code is None
