"""fetch.py against a real loopback server: one test per RELIABILITY row F2-F8 that fetch owns (matrix 1-14)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
import trustme

from alertd.errors import ConfigError, FetchError
from alertd.fetch import FetchPolicy, fetch_feed, make_client
from alertd.models import FetchResult, FetchStatus
from alertd.netguard import allow_private_from_env, is_forbidden_address
from alertd.responses import freshness
from tests.feedserver import FeedServer, gzip_body, make_rss

FEED = make_rss([{"title": "Cognac : la Chine taxe", "link": "https://www.bfmtv.com/economie/a.html"}])
LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.1/32"),)
MIB = 1 << 20


def policy(**overrides: object) -> FetchPolicy:
    """A hermetic policy: no allowlist from the environment, short deadline."""
    values: dict[str, object] = {"allow_private": (), "deadline": 10.0}
    values.update(overrides)
    return FetchPolicy(**values)  # type: ignore[arg-type]


def resolver_to(*addresses: str, calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """An injected resolver answering every name with ``addresses``."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        return addresses

    return resolve


async def fetch(url: str, pol: FetchPolicy | None = None, **kwargs: str | None) -> FetchResult:
    pol = pol or policy()
    async with make_client(pol) as client:
        return await fetch_feed(
            client, url, etag=kwargs.get("etag"), last_modified=kwargs.get("last_modified"), policy=pol
        )


# --- success and conditional GET (F7) -------------------------------------------------------------------------


async def test_ok_returns_body_validators_and_sends_user_agent(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED, etag='"v1"', last_modified="Sat, 04 May 2024 10:00:00 GMT")
    result = await fetch(feed_server.url("/bfm.xml"), policy(user_agent="alertd-test/1"))
    assert result.status == FetchStatus.OK
    assert result.body == FEED
    assert (result.etag, result.last_modified) == ('"v1"', "Sat, 04 May 2024 10:00:00 GMT")
    assert feed_server.requests("/bfm.xml")[0].headers["User-Agent"] == "alertd-test/1"
    assert result.permanent_redirect is None
    assert feed_server.url("/bfm.xml") == result.final_url


async def test_the_response_is_translated_into_fields_once(feed_server: FeedServer) -> None:
    """What parse and schedule read: the Content-Type, the base URL, the freshness and Retry-After hints."""
    served = {
        "Content-Type": "application/rss+xml; charset=utf-8",
        "Content-Location": "/rss/economie/",
        "Cache-Control": "public, max-age=900",
        "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT",
    }
    feed_server.route("/bfm.xml", FEED, headers=served)
    result = await fetch(feed_server.url("/bfm.xml"))
    assert "application/rss+xml; charset=utf-8" == result.content_type
    assert feed_server.url("/rss/economie/") == result.base_url
    assert dt.timedelta(minutes=15) == result.fresh_for
    assert dt.datetime(2026, 10, 21, 7, 28, tzinfo=dt.timezone.utc) == result.retry_after


@pytest.mark.parametrize(
    ("cache_control", "expires", "date", "expected"),
    [
        (["max-age=60"], "", "", dt.timedelta(seconds=60)),
        (["no-cache"], "Wed, 21 Oct 2026 09:00:00 GMT", "", None),
        ([], "Wed, 21 Oct 2026 09:00:00 GMT", "Wed, 21 Oct 2026 07:00:00 GMT", dt.timedelta(hours=2)),
        ([], "Wed, 21 Oct 2026 09:00:00 GMT", "", dt.datetime(2026, 10, 21, 9, tzinfo=dt.timezone.utc)),
        ([], "Wed, 21 Oct 2026 06:00:00 GMT", "Wed, 21 Oct 2026 07:00:00 GMT", None),
        (["max-age=junk"], "not a date", "", None),
    ],
    ids=[
        "max-age",
        "no-cache-wins-over-expires",
        "expires-minus-date",
        "expires-without-date",
        "expired",
        "junk",
    ],
)
def test_freshness_hint_of_a_response(
    cache_control: list[str], expires: str, date: str, expected: object
) -> None:
    assert expected == freshness(cache_control, expires, date)


async def test_matching_etag_gets_not_modified_without_body(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED, etag='"v1"')
    result = await fetch(feed_server.url("/bfm.xml"), etag='"v1"')
    assert result.status == FetchStatus.NOT_MODIFIED
    assert result.body == b""
    assert result.etag == '"v1"'
    assert feed_server.requests("/bfm.xml")[0].headers["If-None-Match"] == '"v1"'


async def test_matching_last_modified_gets_not_modified(feed_server: FeedServer) -> None:
    stamp = "Sat, 04 May 2024 10:00:00 GMT"
    feed_server.route("/bfm.xml", FEED, last_modified=stamp)
    result = await fetch(feed_server.url("/bfm.xml"), last_modified=stamp)
    assert result.status == FetchStatus.NOT_MODIFIED
    assert stamp == feed_server.requests("/bfm.xml")[0].headers["If-Modified-Since"]


async def test_changed_content_between_polls_is_fetched_again(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED, etag='"v1"')
    first = await fetch(feed_server.url("/bfm.xml"))
    feed_server.route("/bfm.xml", FEED + b"<!-- v2 -->", etag='"v2"')
    second = await fetch(feed_server.url("/bfm.xml"), etag=first.etag)
    assert (second.status, second.etag) == (FetchStatus.OK, '"v2"')
    assert feed_server.hits("/bfm.xml") == 2


async def test_gzip_encoded_body_is_decoded(feed_server: FeedServer) -> None:
    feed_server.route("/gz.xml", gzip_body(FEED), headers={"Content-Encoding": "gzip"})
    result = await fetch(feed_server.url("/gz.xml"))
    assert (result.status, result.body) == (FetchStatus.OK, FEED)


# --- deadline and size caps (F2, F3; matrix 1-4) -------------------------------------------------------------


async def test_trickle_body_ends_at_overall_deadline(feed_server: FeedServer) -> None:
    feed_server.trickle("/slow.xml", interval=0.05)
    started = time.monotonic()
    result = await fetch(feed_server.url("/slow.xml"), policy(deadline=1.5))
    assert (result.error_class, result.status) == ("timeout", FetchStatus.ERROR)
    assert time.monotonic() - started < 1.5 + 1


async def test_endless_body_stops_at_cap(feed_server: FeedServer) -> None:
    feed_server.endless("/endless.xml")
    started = time.monotonic()
    result = await fetch(feed_server.url("/endless.xml"), policy(max_body_bytes=MIB))
    assert result.error_class == "too_large"
    assert time.monotonic() - started < 5


async def test_gzip_bomb_stops_at_decoded_cap_without_inflating(feed_server: FeedServer) -> None:
    feed_server.gzip_bomb("/bomb.xml", decoded_mib=64)
    tracemalloc.start()
    try:
        result = await fetch(feed_server.url("/bomb.xml"), policy(max_body_bytes=MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_class == "too_large"
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB: the bomb was inflated before the cap"


async def test_content_length_smaller_than_body_is_truncated_not_crashed(feed_server: FeedServer) -> None:
    feed_server.lying_length("/lies.xml", declared=100, actual=10 * MIB)
    result = await fetch(feed_server.url("/lies.xml"))
    assert (result.status, len(result.body)) == (FetchStatus.OK, 100)


async def test_content_length_larger_than_body_is_protocol_error(feed_server: FeedServer) -> None:
    feed_server.lying_length("/short.xml", declared=10_000, actual=10)
    result = await fetch(feed_server.url("/short.xml"))
    assert result.error_class == "protocol_error"


# --- redirects (F4, F10; matrix 5, 14) -------------------------------------------------------------------------


async def test_five_redirects_are_followed(feed_server: FeedServer) -> None:
    feed_server.route("/final.xml", FEED)
    first = feed_server.redirect_chain("/hop", 5, "/final.xml")
    result = await fetch(feed_server.url(first))
    assert (FetchStatus.OK, feed_server.url("/final.xml")) == (result.status, result.final_url)


async def test_six_redirects_are_too_many(feed_server: FeedServer) -> None:
    feed_server.route("/final.xml", FEED)
    first = feed_server.redirect_chain("/hop", 6, "/final.xml")
    result = await fetch(feed_server.url(first))
    assert result.error_class == "too_many_redirects"
    assert feed_server.hits("/final.xml") == 0


async def test_redirect_loop_is_too_many_redirects(feed_server: FeedServer) -> None:
    feed_server.redirect("/a.xml", "/b.xml")
    feed_server.redirect("/b.xml", "/a.xml")
    result = await fetch(feed_server.url("/a.xml"))
    assert result.error_class == "too_many_redirects"
    assert feed_server.hits("/a.xml") + feed_server.hits("/b.xml") == 6


@pytest.mark.parametrize("status", [301, 308])
async def test_permanent_redirect_reports_target(feed_server: FeedServer, status: int) -> None:
    feed_server.route("/new.xml", FEED)
    feed_server.redirect("/old.xml", "/new.xml", status=status)
    result = await fetch(feed_server.url("/old.xml"))
    assert feed_server.url("/new.xml") == result.permanent_redirect


@pytest.mark.parametrize("statuses", [(302,), (307,), (301, 302), (302, 301)])
async def test_redirect_with_a_temporary_hop_is_not_permanent(
    feed_server: FeedServer, statuses: tuple[int, ...]
) -> None:
    feed_server.route("/final.xml", FEED)
    targets = [f"/hop{i}" for i in range(1, len(statuses))] + ["/final.xml"]
    for source, target, status in zip(["/start", *targets[:-1]], targets, statuses, strict=True):
        feed_server.redirect(source, target, status=status)
    result = await fetch(feed_server.url("/start"))
    assert (result.status, result.permanent_redirect) == (FetchStatus.OK, None)
    assert feed_server.url("/final.xml") == result.final_url


async def test_redirect_with_relative_location_is_resolved(feed_server: FeedServer) -> None:
    feed_server.route("/feeds/new.xml", FEED)
    feed_server.route("/feeds/old.xml", status=301, headers={"Location": "new.xml"})
    result = await fetch(feed_server.url("/feeds/old.xml"))
    assert feed_server.url("/feeds/new.xml") == result.final_url


# --- private addresses (F5; matrix 6, 7) -------------------------------------------------------------------------


async def test_public_hostname_resolving_to_loopback_is_blocked(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED)
    pol = policy(resolve=resolver_to("127.0.0.1"))
    result = await fetch(feed_server.url("/bfm.xml", host="feeds.example.test"), pol)
    assert result.error_class == "ssrf_blocked"
    assert feed_server.hits("/bfm.xml") == 0


async def test_dns_rebinding_to_private_address_is_blocked_before_connecting() -> None:
    calls: list[str] = []
    pol = policy(resolve=resolver_to("93.184.216.34", "10.0.0.1", calls=calls))
    started = time.monotonic()
    result = await fetch("http://feeds.example.test/rss.xml", pol)
    assert result.error_class == "ssrf_blocked"
    assert calls == ["feeds.example.test"]
    assert time.monotonic() - started < 1, "no connection attempt should have been made"


async def test_redirect_from_public_feed_to_other_loopback_address_is_blocked(
    feed_server: FeedServer,
) -> None:
    # The allowlist stands in for "this hop is public"; 127.0.0.2 is still loopback and not allowed.
    feed_server.redirect("/bfm.xml", f"http://127.0.0.2:{feed_server.port}/internal")
    pol = policy(resolve=resolver_to("127.0.0.1"), allow_private=LOOPBACK_ONLY)
    result = await fetch(feed_server.url("/bfm.xml", host="feeds.example.test"), pol)
    assert result.error_class == "ssrf_blocked"
    assert feed_server.hits("/bfm.xml") == 1


async def test_allowlisted_network_may_be_reached_through_a_hostname(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED)
    pol = policy(resolve=resolver_to("127.0.0.1"), allow_private=LOOPBACK_ONLY)
    result = await fetch(feed_server.url("/bfm.xml", host="feeds.example.test"), pol)
    assert (result.status, result.body) == (FetchStatus.OK, FEED)
    assert "feeds.example.test" in feed_server.requests("/bfm.xml")[0].headers["Host"]


async def test_configured_literal_loopback_feed_and_same_host_redirects_are_allowed(
    feed_server: FeedServer,
) -> None:
    feed_server.route("/final.xml", FEED)
    feed_server.redirect("/bfm.xml", "/final.xml")
    result = await fetch(feed_server.url("/bfm.xml"), policy(allow_private=()))
    assert result.status == FetchStatus.OK


async def test_configured_loopback_feed_may_not_redirect_to_another_private_host(
    feed_server: FeedServer,
) -> None:
    feed_server.redirect("/bfm.xml", f"http://127.0.0.2:{feed_server.port}/x")
    result = await fetch(feed_server.url("/bfm.xml"))
    assert result.error_class == "ssrf_blocked"


async def test_configured_localhost_feed_is_allowed(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", FEED)
    pol = policy(resolve=resolver_to("127.0.0.1"))
    result = await fetch(feed_server.url("/bfm.xml", host="localhost"), pol)
    assert result.status == FetchStatus.OK


async def test_connect_time_guard_applies_to_direct_client_use(feed_server: FeedServer) -> None:
    # Outside fetch_feed nothing is "configured", so even a literal loopback URL is refused at connect time.
    feed_server.route("/bfm.xml", FEED)
    async with make_client(policy()) as client:
        with pytest.raises(FetchError) as refused:
            await client.get(feed_server.url("/bfm.xml"))
    assert refused.value.error_class == "ssrf_blocked"
    assert feed_server.hits("/bfm.xml") == 0


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "64:ff9b::a00:1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2001:4860:4860::8888"])
def test_public_addresses_are_not_forbidden(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


def test_allowlist_env_is_parsed() -> None:
    env = {"ALERTD_ALLOW_PRIVATE": " 127.0.0.1/32, 10.0.0.0/8 ,,fd00::/8"}
    expected = tuple(ipaddress.ip_network(n) for n in ("127.0.0.1/32", "10.0.0.0/8", "fd00::/8"))
    assert expected == allow_private_from_env(env)


def test_allowlist_env_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="ALERTD_ALLOW_PRIVATE"):
        allow_private_from_env({"ALERTD_ALLOW_PRIVATE": "127.0.0.1/32,loopback"})


def test_policy_defaults_to_env_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTD_ALLOW_PRIVATE", "127.0.0.1/32")
    assert FetchPolicy().allow_private == LOOPBACK_ONLY


# --- TLS (F4 downgrade, F6; matrix 8, 9) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def tls_server(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[FeedServer]:
    """An https FeedServer; ``request.param`` (if any) is the cert: ``(issuing CA or None, names, not_after)``."""
    issuer, names, not_after = getattr(request, "param", (None, ("127.0.0.1",), None))
    cert = (issuer or ca).issue_cert(*names, not_after=not_after)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    with FeedServer(ssl_context=context) as server:
        yield server


@pytest.fixture
async def tls_client(ca: trustme.CA) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(policy(), ssl_context=trusting(ca)) as client:
        yield client


async def test_trusted_certificate_is_fetched(tls_server: FeedServer, tls_client: httpx.AsyncClient) -> None:
    tls_server.route("/bfm.xml", FEED)
    result = await fetch_feed(
        tls_client, tls_server.url("/bfm.xml"), etag=None, last_modified=None, policy=policy()
    )
    assert (result.status, result.body) == (FetchStatus.OK, FEED)


async def test_https_to_http_redirect_is_refused(
    tls_server: FeedServer, tls_client: httpx.AsyncClient, feed_server: FeedServer
) -> None:
    feed_server.route("/bfm.xml", FEED)
    tls_server.redirect("/bfm.xml", feed_server.url("/bfm.xml"), status=301)
    result = await fetch_feed(
        tls_client, tls_server.url("/bfm.xml"), etag=None, last_modified=None, policy=policy()
    )
    assert result.error_class == "redirect_downgrade"
    assert feed_server.hits("/bfm.xml") == 0


_TEN_DAYS_AGO = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)


@pytest.mark.parametrize(
    "tls_server",
    [
        pytest.param((trustme.CA(), ("127.0.0.1",), None), id="untrusted-ca"),
        pytest.param((None, ("feeds.other.test",), None), id="wrong-host"),
        pytest.param((None, ("127.0.0.1",), _TEN_DAYS_AGO), id="expired"),
    ],
    indirect=True,
)
async def test_bad_certificate_is_tls_error(tls_server: FeedServer, tls_client: httpx.AsyncClient) -> None:
    tls_server.route("/bfm.xml", FEED)
    result = await fetch_feed(
        tls_client, tls_server.url("/bfm.xml"), etag=None, last_modified=None, policy=policy()
    )
    assert (result.error_class, result.status) == ("tls_error", FetchStatus.ERROR)
    assert tls_server.hits("/bfm.xml") == 0


def test_client_refuses_an_unverified_tls_context() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="verification"):
        make_client(policy(), ssl_context=context)


# --- statuses (F8, F9; matrix 11, 13) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "120"), (429, "Wed, 21 Oct 2026 07:28:00 GMT"), (503, "3600")],
)
async def test_rate_limited_keeps_retry_after(feed_server: FeedServer, status: int, retry_after: str) -> None:
    feed_server.route("/bfm.xml", b"slow down", status=status, headers={"Retry-After": retry_after})
    result = await fetch(feed_server.url("/bfm.xml"))
    assert ("rate_limited", status) == (result.error_class, result.http_status)
    assert retry_after == dict(result.headers)["retry-after"]


async def test_gone_is_reported_as_gone(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", b"", status=410)
    result = await fetch(feed_server.url("/bfm.xml"))
    assert (result.status, result.http_status) == (FetchStatus.GONE, 410)


@pytest.mark.parametrize(("status", "error_class"), [(404, "http_4xx"), (403, "http_4xx"), (500, "http_5xx")])
async def test_http_errors_are_classified(feed_server: FeedServer, status: int, error_class: str) -> None:
    feed_server.route("/bfm.xml", b"no", status=status)
    result = await fetch(feed_server.url("/bfm.xml"))
    assert (FetchStatus.ERROR, error_class, status) == (result.status, result.error_class, result.http_status)


# --- network failures ---------------------------------------------------------------------------------------------


async def test_connection_refused_is_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await fetch(f"http://127.0.0.1:{port}/bfm.xml")
    assert result.error_class == "connect_error"


async def test_unresolvable_name_is_dns_error() -> None:
    async def fail(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = await fetch("http://nowhere.example.test/rss", policy(resolve=fail))
    assert result.error_class == "dns_error"


@pytest.mark.parametrize("url", ["ftp://example.test/feed", "not a url", "http://", "file:///etc/passwd"])
async def test_invalid_url_is_reported(url: str) -> None:
    result = await fetch(url)
    assert ("invalid_url", FetchStatus.ERROR, url) == (result.error_class, result.status, result.url)


async def test_redirect_to_non_http_scheme_is_invalid_url(feed_server: FeedServer) -> None:
    feed_server.route("/bfm.xml", status=302, headers={"Location": "file:///etc/passwd"})
    result = await fetch(feed_server.url("/bfm.xml"))
    assert result.error_class == "invalid_url"


# --- connection reuse -----------------------------------------------------------------------------------------


async def test_not_modified_redirect_and_error_responses_leave_the_connection_reusable() -> None:
    """An unread 304 / redirect / error body would close the connection: each poll would reconnect."""
    connections = 0
    answers = {
        b"/feed": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n',
        b"/old": b"HTTP/1.1 301 Moved Permanently\r\nLocation: /feed\r\nContent-Length: 5\r\n\r\nmoved",
        b"/missing": b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nnot found\r\n0\r\n\r\n",
    }

    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while request_line := await reader.readline():
                while await reader.readline() not in (b"\r\n", b""):
                    pass
                writer.write(answers[request_line.split()[1]])
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pol = policy()
    async with server:
        async with make_client(pol) as client:
            statuses = [
                (
                    await fetch_feed(
                        client, f"http://127.0.0.1:{port}{path}", etag='"v1"', last_modified=None, policy=pol
                    )
                ).http_status
                for path in ("/feed", "/feed", "/old", "/old", "/missing", "/missing", "/feed")
            ]
        await asyncio.wait_for(asyncio.gather(*handlers), 5)  # the client hung up: each handler ends
    assert [304, 304, 304, 304, 404, 404, 304] == statuses
    # At most one connection per URL (the pool is sharded by URL); 9 requests without reuse.
    assert connections <= 3
