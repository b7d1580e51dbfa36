"""AK/SK signing: reference vectors, the official SDK as an oracle, verify(), secrecy of the SK."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.modelarts.auth.aksk import (
    DATE_FORMAT,
    SIGNING_CACHE,
    UNSIGNED_HEADERS,
    AkSkAuth,
    SigningCache,
    canonical_query,
    canonical_request,
    sign,
    verify,
)

AK, SK = "AKTEST", "SKTEST"
HOST = "modelarts.cn-north-4.myhuaweicloud.com"
BASE = f"https://{HOST}"
DATE = "20240101T000000Z"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
JOB_URL = f"{BASE}/v2/PROJ/training-jobs/JOBID"
SEARCH_URL = f"{BASE}/v2/PROJ/training-job-searches"
SEARCH_BODY = b'{"offset":0,"limit":50}'
JSON = {"Content-Type": "application/json"}

# (method, url, extra headers, project_id, body, expected Authorization) from the API notes.
VECTORS = [
    pytest.param(
        "GET",
        JOB_URL,
        {},
        None,
        b"",
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=host;x-sdk-date, "
        "Signature=830be1058cd32c40fce97676702ae0d32d092b60f33833045dd3e313a6799e8a",
        id="get-bare",
    ),
    pytest.param(
        "GET",
        JOB_URL,
        JSON,
        "PROJ",
        b"",
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        "Signature=8be5069a880fc70aa2251334ddff5a964928a35b284563bae06d4b9b3f3540a6",
        id="get-json-project",
    ),
    pytest.param(
        "POST",
        SEARCH_URL,
        JSON,
        None,
        SEARCH_BODY,
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=0a16ba90bd8d8fcaeb128962a243c1937ddacbc54d9821a720d4f6e5c80dff78",
        id="post-search",
    ),
]


def fixed_clock(at: float = EPOCH) -> Callable[[], float]:
    return lambda: at


def secrets(ak: str = AK, sk: str = SK) -> Callable[[str], str | None]:
    return {ak: sk}.get


def recorder(received: list[httpx.Request]) -> httpx.MockTransport:
    """A transport that records every request it receives and answers 200."""

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={})

    return httpx.MockTransport(handler)


def send(auth: AkSkAuth, request: httpx.Request) -> tuple[httpx.Request, httpx.Response]:
    """Send ``request`` through ``auth`` to a MockTransport; return what the transport received."""
    received: list[httpx.Request] = []
    with httpx.Client(transport=recorder(received)) as client:
        response = client.send(request, auth=auth)
    assert len(received) == 1, "the request must be sent exactly once"
    return received[0], response


def sdk_authorization(
    method: str,
    resource_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    ak: str = AK,
    sk: str = SK,
    host: str = HOST,
) -> SdkRequest:
    """Sign with the official SDK; inputs are copied because the SDK mutates them."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=resource_path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(BasicCredentials(ak, sk)).sign(request)
    return request


def is_json(content_type: str | None) -> bool:
    return content_type is None or content_type.startswith(("application/json", "application/bson"))


# --- reference vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url", "extra", "project_id", "body", "expected"), VECTORS)
def test_sign_reproduces_reference_vectors(
    method: str,
    url: str,
    extra: dict[str, str],
    project_id: str | None,
    body: bytes,
    expected: str,
) -> None:
    """sign() reproduces the official SDK's reference Authorization values exactly."""
    headers = {"Host": HOST, "X-Sdk-Date": DATE, **extra}
    if project_id:
        headers["X-Project-Id"] = project_id
    assert sign(method, url, headers, body, AK, SK) == expected


@pytest.mark.parametrize(("method", "url", "extra", "project_id", "body", "expected"), VECTORS)
def test_aksk_auth_reproduces_reference_vectors(
    method: str,
    url: str,
    extra: dict[str, str],
    project_id: str | None,
    body: bytes,
    expected: str,
) -> None:
    """AkSkAuth with a fixed clock sends the reference Authorization (Content-Length unsigned)."""
    auth = AkSkAuth(AK, SK, project_id=project_id, clock=fixed_clock())
    request = httpx.Request(method, url, headers=extra, content=body or None)
    received, _ = send(auth, request)
    assert received.headers["Authorization"] == expected
    assert received.headers["X-Sdk-Date"] == DATE
    assert received.content == body


def test_sdk_reference_vectors_are_what_the_sdk_computes() -> None:
    """The vectors in the notes are the SDK's own output (guards the oracle wiring)."""
    request = sdk_authorization(
        "POST", "/v2/PROJ/training-job-searches", [], {"X-Sdk-Date": DATE, **JSON}, SEARCH_BODY
    )
    assert request.header_params["Authorization"] == VECTORS[2].values[-1]


# --- the official SDK as an oracle ------------------------------------------------------------

_TEXT = st.characters(exclude_categories=("Cs",))  # surrogates cannot be UTF-8 encoded at all
_RESERVED = st.sampled_from(list(" ~%/?#[]@!$&'()*+,;=:"))
_PERCENTISH = st.sampled_from(["%41", "%2F", "%2f", "%20", "%zz", "%", "%FF", "%C3%BC", "%7E"])
_SEGMENT = st.text(alphabet=st.one_of(_TEXT, _RESERVED), max_size=8)
# A path written straight into a URL: "?" and "#" would end the path, so the SDK would send a URL
# other than the one it signs (its resource_path is pasted in front of "?query" unescaped), and a
# URL string cannot carry control characters (urlsplit drops tab/CR/LF, as WHATWG says).
_RAW_SEGMENT = st.lists(
    st.one_of(
        st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="?#"),
        _PERCENTISH,
    ),
    max_size=6,
).map("".join)


@st.composite
def resource_paths(draw: st.DrawFn) -> str:
    """A path as the SDK client builds it (segments quoted with safe='') or already half raw."""
    if draw(st.booleans()):
        segments = [quote(s, safe="") for s in draw(st.lists(_SEGMENT, max_size=5))]
    else:
        segments = draw(st.lists(_RAW_SEGMENT, max_size=5))
    return "/" + "/".join(segments)


_QUERY_TEXT = st.text(alphabet=st.one_of(_TEXT, _RESERVED), max_size=6)
query_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["a", "A", "b", "~x", "k k", ""]), _QUERY_TEXT), _QUERY_TEXT
    ),
    max_size=6,
)

_RESERVED_HEADERS = {"host", "x-sdk-date", "authorization", "content-type", "x-sdk-content-sha256"}


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    names = draw(
        st.lists(
            st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=10),
            max_size=5,
            # Two names differing only in case make the SDK sign the same name twice; an HTTP
            # request cannot carry that distinction, so the class is left out.
            unique_by=str.lower,
        )
    )
    padding = st.sampled_from(["", " ", "  ", "\t", " \t "])
    return {
        name: draw(padding) + draw(st.text(alphabet=_TEXT, max_size=8)) + draw(padding)
        for name in names
        if name.lower() not in _RESERVED_HEADERS
    }


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=resource_paths(),
    query=query_pairs,
    plus_for_space=st.booleans(),
    extra=extra_headers(),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "application/json;charset=UTF-8",
            "application/bson",
            "text/plain",
            "application/octet-stream",
        ]
    ),
    host=st.sampled_from([HOST, f"{HOST}:8443", "127.0.0.1:9000"]),
    sdk_sets_host=st.booleans(),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    body=st.binary(max_size=64),
    ak=st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=20),
    sk=st.text(alphabet=_TEXT, min_size=1, max_size=40),
)
def test_sign_matches_the_official_sdk(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    plus_for_space: bool,
    extra: dict[str, str],
    content_type: str | None,
    host: str,
    sdk_sets_host: bool,
    when: datetime,
    body: bytes,
    ak: str,
    sk: str,
) -> None:
    """sign() equals the SDK's Authorization for arbitrary paths, queries, headers and bodies."""
    sdk_headers = {**extra, "X-Sdk-Date": when.strftime(DATE_FORMAT)}
    if content_type is not None:
        sdk_headers["Content-Type"] = content_type
    if not sdk_sets_host:
        sdk_headers["Host"] = host
    sdk = sdk_authorization(method, path, query, sdk_headers, body, ak=ak, sk=sk, host=host)

    # The headers the SDK's request actually carries when it signs: it adds Host if absent and,
    # for a non-JSON Content-Type, "X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD" (signed, and used in
    # place of the body hash). sign() needs both given explicitly.
    ours = {**sdk_headers, "Host": host}
    if not is_json(content_type):
        ours["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
    quote_via = quote_plus if plus_for_space else quote
    url = f"https://{host}{path}"
    if query:
        url += "?" + urlencode(query, quote_via=quote_via)

    assert sign(method, url, ours, body, ak, sk) == sdk.header_params["Authorization"]


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(_SEGMENT.filter(lambda s: s not in {".", ".."}), max_size=4),
    query=query_pairs,
    extra=st.dictionaries(
        st.sampled_from(["X-Trace", "x_under", "Accept-Language", "X-Mixed-CASE"]),
        st.text(alphabet=string.ascii_letters + string.digits + " ;,=/", max_size=8).map(str.strip),
        max_size=3,
    ),
    project_id=st.one_of(st.none(), st.text(alphabet=string.hexdigits, min_size=1, max_size=32)),
    body=st.binary(max_size=64),
)
def test_aksk_auth_sends_the_url_and_signature_the_sdk_would(
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    extra: dict[str, str],
    project_id: str | None,
    body: bytes,
) -> None:
    """Through httpx, the wire URI equals the SDK's and the signature equals the SDK's.

    Dot segments are left out: httpx resolves them, which is URL semantics, not data.
    """
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    auth = AkSkAuth(AK, SK, project_id=project_id, clock=fixed_clock())
    request = httpx.Request(
        method, BASE + path, params=tuple(query), headers={**extra, **JSON}, content=body or None
    )
    received, _ = send(auth, request)

    signed = {k: v for k, v in received.headers.items() if k.lower() not in UNSIGNED_HEADERS}
    sdk = sdk_authorization(method, path, query, signed, body)
    assert received.url.raw_path.decode() == sdk.uri  # same request target on the wire
    assert received.headers["Authorization"] == sdk.header_params["Authorization"]
    assert (
        verify(
            method,
            received.url.raw_path.decode(),
            received.headers,
            received.content,
            secrets(),
            now=EPOCH,
        )
        is None
    )


# --- canonicalisation quirks copied from the SDK ----------------------------------------------


def test_canonical_uri_decodes_before_encoding_and_always_ends_in_slash() -> None:
    """%41 signs like A, %2F like a separator, a stray % as %25, and a trailing / is added."""
    headers = {"Host": HOST, "X-Sdk-Date": DATE}
    text, _ = canonical_request("get", "/v2/%41/a%2Fb/100%/caf%C3%A9 x~", "", headers, b"")
    assert text.splitlines()[:2] == ["GET", "/v2/A/a/b/100%25/caf%C3%A9%20x~/"]
    text, _ = canonical_request("GET", "/v2/", "", headers, b"")
    assert text.splitlines()[1] == "/v2/"


def test_canonical_query_sorts_decoded_pairs_then_encodes() -> None:
    """Pairs are sorted raw (key, then value), '+' is a space, empty values keep '='."""
    assert canonical_query("b=2&a=y&a=x&flag&sp=a+b%2Bc&%7B=1&z=") == (
        "a=x&a=y&b=2&flag=&sp=a%20b%2Bc&z=&%7B=1"
    )
    assert canonical_query([("~k", "é"), ("k", "")]) == "k=&~k=%C3%A9"


def test_canonical_headers_skip_underscores_lowercase_and_trim() -> None:
    """Names with '_' are unsigned; names are lower-cased and sorted; values are stripped."""
    headers = {"X-Sdk-Date": DATE, "Host": HOST, "X_Skip": "1", "X-B": "  two ", "x-a": "\tone"}
    text, signed = canonical_request("GET", "/", "", headers, b"")
    assert signed == "host;x-a;x-b;x-sdk-date"
    assert f"host:{HOST}\nx-a:one\nx-b:two\nx-sdk-date:{DATE}\n\n{signed}\n" in text


def test_payload_hash_uses_x_sdk_content_sha256_only_for_a_non_empty_body() -> None:
    """UNSIGNED-PAYLOAD replaces the body hash, as in the SDK, but not for an empty body."""
    headers = {"Host": HOST, "X-Sdk-Date": DATE, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
    text, _ = canonical_request("PUT", "/", "", headers, b"data")
    assert text.endswith("\nUNSIGNED-PAYLOAD")
    text, _ = canonical_request("PUT", "/", "", headers, b"")
    assert text.endswith("\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# --- AkSkAuth behaviour -------------------------------------------------------------------------


def test_aksk_auth_sends_canonical_query_without_double_encoding() -> None:
    """The path goes out as given; the query goes out in canonical form, encoded exactly once."""
    auth = AkSkAuth(AK, SK, clock=fixed_clock())
    request = httpx.Request("GET", f"{BASE}/v2/a%20b/caf%C3%A9?b=2&a=x y&c=%2B", params=None)
    received, _ = send(auth, request)
    assert received.url.raw_path == b"/v2/a%20b/caf%C3%A9?a=x%20y&b=2&c=%2B"
    assert verify("GET", str(received.url), received.headers, b"", secrets(), EPOCH) is None


def test_aksk_auth_sets_date_from_clock_project_id_and_missing_host_with_port() -> None:
    """X-Sdk-Date comes from the clock, X-Project-Id from project_id, Host from the URL."""
    auth = AkSkAuth(AK, SK, project_id="PROJ", clock=fixed_clock(EPOCH + 3661))
    request = httpx.Request("GET", "https://example.test:8443/v2/x", headers={"X-Sdk-Date": "old"})
    del request.headers["Host"]
    received, _ = send(auth, request)
    assert received.headers["X-Sdk-Date"] == "20240101T010101Z"
    assert received.headers["X-Project-Id"] == "PROJ"
    assert received.headers["Host"] == "example.test:8443"
    assert "x-project-id" in received.headers["Authorization"]


def test_aksk_auth_leaves_transport_headers_unsigned() -> None:
    """Client defaults are signed, but Connection and Content-Length are not."""
    received: list[httpx.Request] = []
    transport = recorder(received)
    auth = AkSkAuth(AK, SK, clock=fixed_clock())
    with httpx.Client(transport=transport, auth=auth) as client:
        client.post(SEARCH_URL, json={"offset": 0})
    authorization = received[0].headers["Authorization"]
    assert "SignedHeaders=accept;accept-encoding;content-type;host;user-agent;x-sdk-date," in (
        authorization
    )


def test_aksk_auth_resigns_each_request_with_a_fresh_date() -> None:
    """Every send gets its own X-Sdk-Date, so a retried request is never stale."""
    now = [EPOCH]
    received: list[httpx.Request] = []
    auth = AkSkAuth(AK, SK, clock=lambda: now[0])
    with httpx.Client(transport=recorder(received), auth=auth) as client:
        client.get(JOB_URL)
        now[0] += 60
        client.get(JOB_URL)
    assert [r.headers["X-Sdk-Date"] for r in received] == ["20240101T000000Z", "20240101T000100Z"]


async def test_aksk_auth_works_with_async_client() -> None:
    """The same auth signs through httpx.AsyncClient, body included."""
    received: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    auth = AkSkAuth(AK, SK, clock=fixed_clock())
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        await client.post(SEARCH_URL, content=SEARCH_BODY, headers=JSON)
    request = received[0]
    assert (
        verify("POST", str(request.url), request.headers, request.content, secrets(), EPOCH) is None
    )


def test_post_with_json_body_is_signed_over_that_body() -> None:
    """verify() accepts the JSON body that was sent and rejects any other body."""
    received: list[httpx.Request] = []
    transport = recorder(received)
    auth = AkSkAuth(AK, SK, project_id="PROJ", clock=fixed_clock())
    with httpx.Client(transport=transport, auth=auth) as client:
        client.post(SEARCH_URL, json={"offset": 0, "limit": 50})
    request = received[0]
    assert json.loads(request.content) == {"offset": 0, "limit": 50}
    args = ("POST", request.url.raw_path.decode(), request.headers)
    assert verify(*args, request.content, secrets(), EPOCH) is None
    tampered = request.content.replace(b"50", b"51")
    assert verify(*args, tampered, secrets(), EPOCH) == "signature mismatch"


# --- verify() -----------------------------------------------------------------------------------


def signed_request() -> httpx.Request:
    auth = AkSkAuth(AK, SK, project_id="PROJ", clock=fixed_clock())
    request = httpx.Request("POST", SEARCH_URL + "?limit=5", headers=JSON, content=SEARCH_BODY)
    return send(auth, request)[0]


def test_verify_accepts_sign_output() -> None:
    """A request signed by sign() verifies, also with an origin-form target."""
    headers = {"Host": HOST, "X-Sdk-Date": DATE, **JSON}
    headers["Authorization"] = sign("POST", SEARCH_URL, headers, SEARCH_BODY, AK, SK)
    assert verify("POST", SEARCH_URL, headers, SEARCH_BODY, secrets(), EPOCH + 899) is None
    target = "/v2/PROJ/training-job-searches"
    assert verify("POST", target, headers, SEARCH_BODY, secrets(), EPOCH - 899) is None


def test_verify_accepts_aksk_auth_output() -> None:
    """A request signed by AkSkAuth verifies with the headers and target it arrived with."""
    request = signed_request()
    target = request.url.raw_path.decode()
    assert verify("POST", target, request.headers, request.content, secrets(), EPOCH) is None


def _with(headers: httpx.Headers, name: str, value: str) -> httpx.Headers:
    copy = httpx.Headers(headers)
    copy[name] = value
    return copy


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"secret_for": secrets(sk="NOPE")}, "signature mismatch", id="wrong-sk"),
        pytest.param({"body": b'{"offset":1,"limit":50}'}, "signature mismatch", id="body"),
        pytest.param(
            {"url": "/v2/OTHER/training-job-searches?limit=5"}, "signature mismatch", id="path"
        ),
        pytest.param(
            {"url": "/v2/PROJ/training-job-searches?limit=500"}, "signature mismatch", id="query"
        ),
        pytest.param({"method": "PUT"}, "signature mismatch", id="method"),
        pytest.param({"set": ("X-Project-Id", "OTHER")}, "signature mismatch", id="signed-header"),
        pytest.param({"now": EPOCH + 901}, "X-Sdk-Date too far from now", id="stale-date"),
        pytest.param({"now": EPOCH - 901}, "X-Sdk-Date too far from now", id="future-date"),
        pytest.param(
            {"drop": "X-Project-Id"}, "missing signed header x-project-id", id="missing-header"
        ),
        pytest.param({"drop": "Authorization"}, "missing Authorization", id="no-authorization"),
        pytest.param({"secret_for": secrets(ak="OTHER")}, "unknown access key", id="unknown-ak"),
        pytest.param(
            {"set": ("Authorization", "Basic Zm9vOmJhcg==")},
            "malformed Authorization",
            id="not-aksk",
        ),
        pytest.param(
            {"set": ("X-Sdk-Date", "2024-01-01T00:00:00Z")}, "malformed X-Sdk-Date", id="bad-date"
        ),
    ],
)
def test_verify_rejects_bad_requests_with_a_reason(change: dict[str, Any], expected: str) -> None:
    """verify() names why a tampered, stale, incomplete or foreign request is rejected."""
    request = signed_request()
    headers = httpx.Headers(request.headers)
    if "set" in change:
        headers[change["set"][0]] = change["set"][1]
    if "drop" in change:
        del headers[change["drop"]]
    reason = verify(
        change.get("method", "POST"),
        change.get("url", request.url.raw_path.decode()),
        headers,
        change.get("body", request.content),
        change.get("secret_for", secrets()),
        now=change.get("now", EPOCH),
    )
    assert reason == expected


def test_verify_rejects_unsigned_date_or_host() -> None:
    """A signature that does not cover X-Sdk-Date and Host is refused outright."""
    request = signed_request()
    authorization = request.headers["Authorization"].replace("x-sdk-date", "x-other")
    headers = _with(request.headers, "Authorization", authorization)
    reason = verify("POST", str(request.url), headers, request.content, secrets(), EPOCH)
    assert reason is not None
    assert reason.startswith("malformed SignedHeaders")


# --- the SK stays secret ------------------------------------------------------------------------

SECRET = "s3cr3t-SK-value"


def test_repr_and_str_show_the_ak_but_not_the_sk() -> None:
    """repr()/str() name the AK and mask the SK."""
    auth = AkSkAuth("MYAK", SECRET, project_id="PROJ")
    for text in (repr(auth), str(auth)):
        assert "MYAK" in text
        assert "sk=***" in text
        assert SECRET not in text


def test_sk_is_not_in_an_attribute_dump() -> None:
    """vars(auth) printed by accident does not reveal the SK."""
    auth = AkSkAuth("MYAK", SECRET)
    assert SECRET not in str(vars(auth))
    assert SECRET not in repr(vars(auth))


def test_errors_never_mention_the_sk() -> None:
    """Signing errors say what is missing without echoing the secret."""
    with pytest.raises(ValueError, match="Host") as no_host:
        sign("GET", JOB_URL, {"X-Sdk-Date": DATE}, b"", AK, SECRET)
    with pytest.raises(ValueError, match="X-Sdk-Date") as bad_date:
        sign("GET", JOB_URL, {"Host": HOST, "X-Sdk-Date": "yesterday"}, b"", AK, SECRET)
    with pytest.raises(ValueError, match="X-Sdk-Date") as no_date:
        sign("GET", JOB_URL, {"Host": HOST}, b"", AK, SECRET)
    with pytest.raises(ValueError, match="sk is required") as empty_sk:
        AkSkAuth("MYAK", "")
    for exc in (no_host, bad_date, no_date, empty_sk):
        assert SECRET not in str(exc.value)


# --- temporary credentials: the security token ------------------------------------------------

TOKEN = "gQpjbi1ub3J0aC00-temporary+token/value=="


def sdk_temporary_authorization(
    method: str,
    resource_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    token: str,
) -> SdkRequest:
    """The SDK's own path for temporary AK/SK: ``with_security_token`` then ``sign_request``,
    which adds ``X-Security-Token`` to the request before signing it."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=resource_path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    return BasicCredentials(AK, SK).with_security_token(token).sign_request(request)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    token=st.text(
        alphabet=string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=80
    ),
    project_id=st.one_of(st.none(), st.text(alphabet=string.hexdigits, min_size=1, max_size=32)),
    body=st.binary(max_size=32),
)
def test_security_token_is_sent_and_signed_exactly_as_the_sdk_does(
    method: str, token: str, project_id: str | None, body: bytes
) -> None:
    """With a security token the header, the signed-header list and the signature all equal
    what the official SDK's ``BasicCredentials(ak, sk).with_security_token(token)`` sends."""
    auth = AkSkAuth(AK, SK, project_id=project_id, security_token=token, clock=fixed_clock())
    request = httpx.Request(
        method, JOB_URL, params={"b": "2", "a": "1"}, headers=JSON, content=body or None
    )
    received, _ = send(auth, request)

    assert received.headers["X-Security-Token"] == token
    signed = {
        k: v
        for k, v in received.headers.items()
        if k.lower() not in UNSIGNED_HEADERS and k.lower() != "x-security-token"
    }
    sdk = sdk_temporary_authorization(
        method, "/v2/PROJ/training-jobs/JOBID", [("b", "2"), ("a", "1")], signed, body, token
    )
    assert sdk.header_params["X-Security-Token"] == token
    assert received.headers["Authorization"] == sdk.header_params["Authorization"]
    assert "x-security-token" in received.headers["Authorization"]


def test_a_tampered_security_token_fails_verification() -> None:
    """The token is covered by the signature: a gateway sees a swapped token as a bad request."""
    auth = AkSkAuth(AK, SK, security_token=TOKEN, clock=fixed_clock())
    received, _ = send(auth, httpx.Request("GET", JOB_URL))
    target = received.url.raw_path.decode()
    assert verify("GET", target, received.headers, b"", secrets(), now=EPOCH) is None
    tampered = _with(received.headers, "X-Security-Token", TOKEN + "x")
    assert verify("GET", target, tampered, b"", secrets(), now=EPOCH) == "signature mismatch"


def test_security_token_is_in_no_repr_or_attribute_dump() -> None:
    """The token is a credential: repr(), str() and vars() mask it like the SK."""
    auth = AkSkAuth("MYAK", SECRET, security_token=TOKEN)
    for text in (repr(auth), str(auth), str(vars(auth)), repr(vars(auth))):
        assert TOKEN not in text
        assert SECRET not in text
    assert "security_token=***" in repr(auth)


def test_without_a_security_token_no_header_is_sent() -> None:
    """Permanent AK/SK send no X-Security-Token (the gateway would reject an empty one)."""
    received, _ = send(AkSkAuth(AK, SK, clock=fixed_clock()), httpx.Request("GET", JOB_URL))
    assert "X-Security-Token" not in received.headers


# --- a request sent again and again: the cached signing parts ---------------------------------


@settings(max_examples=60, deadline=None)
@given(
    segments=st.lists(_SEGMENT.filter(lambda s: s not in {".", ".."}), max_size=4),
    query=query_pairs,
    extra=st.dictionaries(
        st.sampled_from(["Accept", "User-Agent", "X-Trace", "x_under", "Connection"]),
        st.text(alphabet=string.ascii_letters + string.digits + " ;,=/", max_size=8).map(str.strip),
        max_size=4,
    ),
    project_id=st.one_of(st.none(), st.just("PROJ")),
    token=st.one_of(st.none(), st.just(TOKEN)),
)
def test_a_cached_request_is_signed_exactly_as_an_uncached_one_for_the_same_date(
    segments: list[str],
    query: list[tuple[str, str]],
    extra: dict[str, str],
    project_id: str | None,
    token: str | None,
) -> None:
    """A request carrying a ``SigningCache`` (a job's detail GET) goes out with the URL, headers
    and signature the uncached path gives for the same date, byte for byte, on its first send
    and on later ones, whose parts come from the cache."""
    now = [EPOCH]
    auth = AkSkAuth(AK, SK, project_id=project_id, security_token=token, clock=lambda: now[0])
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    url = BASE + path + ("?" + urlencode(query) if query else "")
    cache = SigningCache()
    for at in (EPOCH, EPOCH + 61.7, EPOCH + 3600):
        now[0] = at
        cached, _ = send(
            auth, httpx.Request("GET", url, headers=extra, extensions={SIGNING_CACHE: cache})
        )
        plain, _ = send(auth, httpx.Request("GET", url, headers=extra))

        assert cached.headers["Authorization"] == plain.headers["Authorization"]
        assert sorted(cached.headers.multi_items()) == sorted(plain.headers.multi_items())
        assert cached.url.raw_path == plain.url.raw_path
        target = cached.url.raw_path.decode()
        assert verify("GET", target, cached.headers, b"", secrets(), now=at) is None
    assert cache.parts is not None


def test_a_cached_request_signed_with_another_key_is_signed_with_that_key() -> None:
    """Renewed temporary credentials (a new key and token) sign the next send of a cached
    request: the parts are worked out again, not reused from the old key."""
    cache = SigningCache()
    old = AkSkAuth(AK, SK, security_token=TOKEN, clock=fixed_clock())
    new = AkSkAuth("AKNEW", "SKNEW", security_token=TOKEN + "2", clock=fixed_clock())
    send(old, httpx.Request("GET", JOB_URL, extensions={SIGNING_CACHE: cache}))
    received, _ = send(new, httpx.Request("GET", JOB_URL, extensions={SIGNING_CACHE: cache}))

    assert received.headers["X-Security-Token"] == TOKEN + "2"
    target = received.url.raw_path.decode()
    keys = secrets("AKNEW", "SKNEW")
    assert verify("GET", target, received.headers, b"", keys, now=EPOCH) is None


def test_a_signing_cache_shows_no_credential() -> None:
    """What the cache keeps for a job shows neither the secret nor the security token."""
    cache = SigningCache()
    send(
        AkSkAuth(AK, SECRET, security_token=TOKEN, clock=fixed_clock()),
        httpx.Request("GET", JOB_URL, extensions={SIGNING_CACHE: cache}),
    )
    assert cache.parts is not None
    for text in (repr(cache), repr(cache.parts), str(cache.parts)):
        assert SECRET not in text
        assert TOKEN not in text
