"""Webhooks go to public addresses only (SSRF): internal targets, in any spelling, are
refused at registration (core, CLI, back-office page) and again at delivery, after the name
is resolved; TOLOM_WEBHOOK_ALLOWED_NETWORKS lets an operator allow an intranet receiver."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update

from tests.adapters.web.test_web import Web, add_user, csrf_in, text_of
from tests.adapters.web.test_web import web as web
from tests.core.events.test_webhooks import Receiver, emit, receiving
from tests.core.events.test_worker import make_due
from tests.factories import run_cli
from tolom.addresses import IPNetwork
from tolom.db.schema import deliveries, webhook_endpoints
from tolom.events import endpoints
from tolom.events.worker import Worker
from tolom.settings import Settings

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]

# Hosts that reach this machine, the intranet or the cloud's metadata service.
FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.0.0.2",
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.1",
    "127.1",
    "0177.0.0.1",  # octal
    "0x7f000001",
    "0X7F.0.0.1",
    "0",
    "0.0.0.0",
    "localhost",
    "LOCALHOST.",
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "[::1]",
    "[::]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[ff02::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
    "[64:ff9b::a00:1]",  # NAT64 around 10.0.0.1
]
FORBIDDEN_URLS = [f"http://{host}:8080/hooks" for host in FORBIDDEN_HOSTS]


def test_the_rule_for_addresses() -> None:
    from tolom.events import targets

    for host in FORBIDDEN_HOSTS:
        if host.strip("[]").lower().rstrip(".") == "localhost":
            continue
        ip = targets.literal(host)
        assert ip is not None and targets.forbidden(ip), host
    for public in ["8.8.8.8", "93.184.216.34", "[2a00:1450:4001::1]", "[::ffff:8.8.8.8]"]:
        ip = targets.literal(public)
        assert ip is not None and not targets.forbidden(ip), public
    assert targets.literal("hooks.example.kg") is None and targets.literal("cafe.face") is None
    with pytest.raises(targets.TargetRefused, match="адрес запрещён"):
        targets.check_address(ipaddress.ip_address("127.0.0.1"), [])
    targets.check_address(ipaddress.ip_address("127.0.0.1"), LOCAL)  # allowed
    with pytest.raises(targets.TargetRefused):
        targets.check_address(ipaddress.ip_address("127.0.0.2"), LOCAL)
    # An IPv4-mapped address is allowed by its IPv4 network.
    targets.check_address(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL)


def test_the_core_refuses_internal_targets(engine: Engine) -> None:
    for n, url in enumerate(FORBIDDEN_URLS):
        with pytest.raises(endpoints.EndpointError) as refused, engine.begin() as conn:
            endpoints.add(conn, name=f"w{n}", url=url, event_types="*", actor="test")
        assert refused.value.code == "url_forbidden", url
        assert str(refused.value).startswith("адрес запрещён"), url
    with engine.connect() as conn:
        assert conn.execute(select(webhook_endpoints)).all() == []


def test_the_allow_list_lets_an_intranet_receiver_through(engine: Engine) -> None:
    with engine.begin() as conn:
        endpoints.add(
            conn,
            name="intranet",
            url="http://127.0.0.1:8080/hooks",
            event_types="*",
            actor="test",
            allowed_networks=LOCAL,
        )
    # Only the allowed network: its neighbours stay refused.
    with pytest.raises(endpoints.EndpointError, match="адрес запрещён"), engine.begin() as conn:
        endpoints.add(
            conn,
            name="other",
            url="http://10.0.0.1/hooks",
            event_types="*",
            actor="test",
            allowed_networks=LOCAL,
        )


def test_the_cli_refuses_internal_targets(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n, url in enumerate(FORBIDDEN_URLS):
        refused = run_cli(database_url, monkeypatch, ["webhook", "add", f"w{n}", url])
        assert refused.exit_code == 1, (url, refused.output)
        assert "Ошибка" in refused.output and "адрес запрещён" in refused.output, refused.output
    as_json = run_cli(
        database_url, monkeypatch, ["webhook", "add", "w", FORBIDDEN_URLS[0], "--json"]
    )
    assert as_json.exit_code == 1 and "адрес запрещён" in as_json.output

    monkeypatch.setenv("TOLOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    added = run_cli(database_url, monkeypatch, ["webhook", "add", "local", "http://127.1:9/x"])
    assert added.exit_code == 0, added.output
    with engine.connect() as conn:
        assert [r.name for r in conn.execute(select(webhook_endpoints))] == ["local"]


def test_the_page_refuses_internal_targets(web: Web) -> None:
    add_user(web.engine, username="admin", role="admin")
    browser = web.signed_in("admin")
    csrf = csrf_in(browser.get("/webhooks").text)
    for n, url in enumerate(FORBIDDEN_URLS):
        refused = browser.post("/webhooks", data={"csrf": csrf, "name": f"w{n}", "url": url})
        assert refused.status_code == 422, url
        assert "Адрес запрещён" in text_of(refused.text, "webhook-errors"), url
    with web.engine.connect() as conn:
        assert conn.execute(select(webhook_endpoints)).all() == []

    # With the intranet receiver allowed, the same address is taken.
    runtime = web.app.state.runtime
    runtime.settings = runtime.settings.model_copy(update={"webhook_allowed_networks": LOCAL})
    added = browser.post(
        "/webhooks", data={"csrf": csrf, "name": "intranet", "url": "http://127.0.0.1:9/x"}
    )
    assert added.status_code == 201, text_of(added.text, "webhook-errors")


def _deliver(engine: Engine, settings: Settings, allowed: list[IPNetwork]) -> None:
    changed = {"worker_poll_seconds": 0.05, "webhook_allowed_networks": allowed}
    Worker(settings.model_copy(update=changed), engine).run(once=True)


@pytest.mark.parametrize(
    ("host", "reachable"),
    [
        ("localhost", True),
        ("2130706433", True),
        ("127.1", True),
        ("0x7f.1", True),
        ("0177.0.0.1", False),  # httpx itself refuses this spelling ("Invalid IPv4 address")
    ],
)
def test_delivery_refuses_what_resolves_to_an_internal_address(
    engine: Engine, settings: Settings, host: str, reachable: bool
) -> None:
    """An endpoint stored before the check (or whose name changed since) is refused when
    its name is resolved at delivery: a failed attempt saying why, retried as usual."""
    with receiving(Receiver()) as receiver:
        with engine.begin() as conn:
            _id, receiver.secret = endpoints.add(
                conn,
                name="sochi",
                url=receiver.url,
                event_types="*",
                actor="test",
                allowed_networks=LOCAL,
            )
            conn.execute(
                update(webhook_endpoints).values(url=receiver.url.replace("127.0.0.1", host))
            )
        emit(engine)
        _deliver(engine, settings, [])
        assert receiver.hits == []
        with engine.connect() as conn:
            row = conn.execute(select(deliveries)).one()
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error.startswith("адрес запрещён: "), row.last_error
        assert "127.0.0.1" in row.last_error or "::1" in row.last_error, row.last_error

        if not reachable:
            return
        # Allowed, the same endpoint gets the event: the check is what stopped it.
        make_due(engine)
        _deliver(engine, settings, [*LOCAL, ipaddress.ip_network("::1/128")])
        assert len(receiver.hits) == 1 and receiver.hits[0].verified
        with engine.connect() as conn:
            assert conn.execute(select(deliveries.c.status)).scalar_one() == "delivered"


def test_delivery_refuses_a_url_with_a_login(engine: Engine, settings: Settings) -> None:
    with receiving(Receiver()) as receiver:
        with engine.begin() as conn:
            endpoints.add(
                conn,
                name="sochi",
                url=receiver.url,
                event_types="*",
                actor="test",
                allowed_networks=LOCAL,
            )
            conn.execute(update(webhook_endpoints).values(url=receiver.url.replace("//", "//u:p@")))
        emit(engine)
        _deliver(engine, settings, LOCAL)
        assert receiver.hits == []
    with engine.connect() as conn:
        error = conn.execute(select(deliveries.c.last_error)).scalar_one()
    assert error.startswith("адрес запрещён"), error


def test_the_setting_reads_comma_separated_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32, 10.1.0.0/16")
    assert [str(n) for n in Settings().webhook_allowed_networks] == ["127.0.0.1/32", "10.1.0.0/16"]


@pytest.fixture(scope="module")
def localhost_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` (not for 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *names, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_pinned_connection_still_speaks_tls_to_the_name(
    localhost_certificate: tuple[Path, Path],
) -> None:
    """The check connects to the address it resolved, yet TLS gets the URL's name (SNI,
    certificate check) and the request its Host header; refused, nothing is sent."""
    from tolom.events import targets

    cert, key = localhost_certificate
    seen: dict[str, str] = {}
    names: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["host"] = self.headers["host"]
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(str(name)) and None
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    from tolom.events import pinned

    trusted = ssl.create_default_context(cafile=str(cert))
    allowed = [*LOCAL, ipaddress.ip_network("::1/128")]
    try:
        with httpx.Client(transport=pinned.PinnedTransport(allowed, trusted)) as http:
            answer = http.post(f"https://localhost:{port}/hooks", content=b"{}")
            assert answer.status_code == 204
            assert seen["host"] == f"localhost:{port}" and names == ["localhost"]
            # The certificate names localhost, not 127.0.0.1: still checked.
            with pytest.raises(httpx.ConnectError):
                http.post(f"https://127.0.0.1:{port}/hooks", content=b"{}")
        seen.clear()
        with (
            httpx.Client(transport=pinned.PinnedTransport([], trusted)) as http,
            pytest.raises(targets.TargetRefused, match="адрес запрещён"),
        ):
            http.post(f"https://localhost:{port}/hooks", content=b"{}")
        assert seen == {}
    finally:
        server.shutdown()
        server.server_close()
