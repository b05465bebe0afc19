"""The files under deploy/: the systemd units pass `systemd-analyze verify`, the example
environment names every setting, and the nginx site passes `nginx -t` and, run for real in
front of two live Tolom servers, passes on the client's address the way Tolom reads it,
refuses oversized bodies, hides /metrics, and keeps answering while one server stops.

Only paths and ports of the shipped files are changed for the test (certificates, logs,
pid, temp directories into tmp_path; the listen and upstream ports to free ones)."""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine, select

from tests.factories import add_agent, add_customer, new_txn_id, parse_answer
from tolom import installation
from tolom.app import create_app
from tolom.db import migrate
from tolom.db.engine import make_engine
from tolom.db.schema import gateway_requests
from tolom.ledger import accounts as ledger_accounts
from tolom.settings import Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
TOLOM = Path(shutil.which("tolom") or ROOT / ".venv" / "bin" / "tolom")
NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")
NGINX_HINT = (
    "nginx is missing: `apt-get install -y nginx-light` (as root; `scripts/dev test` does it "
    "when it can)"
)


# --- systemd --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """Every unit parses with no warning (unknown keys, bad values, missing programs)."""
    for unit in (DEPLOY / "systemd").iterdir():
        # The only change: where the `tolom` program is (verify checks that it exists).
        shipped = unit.read_text()
        assert "/opt/tolom/.venv/bin/tolom" in shipped or unit.suffix == ".target"
        (tmp_path / unit.name).write_text(shipped.replace("/opt/tolom/.venv/bin/tolom", str(TOLOM)))
    units = [
        "tolom.service",
        "tolom@8001.service",
        "tolom-worker.service",
        "tolom-watch.service",
        "tolom.target",
    ]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[f"./{u}" for u in units]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_server_units_kill_the_whole_group_and_are_hardened() -> None:
    for name in ("tolom.service", "tolom@.service", "tolom-worker.service"):
        unit = (DEPLOY / "systemd" / name).read_text()
        for line in (
            "KillMode=control-group",
            "EnvironmentFile=/etc/tolom/tolom.env",
            "User=tolom",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        ):
            assert re.search(f"^{re.escape(line)}$", unit, re.M), (name, line)
        assert re.search("^Restart=(on-failure|always)$", unit, re.M), name
    server = (DEPLOY / "systemd" / "tolom@.service").read_text()
    assert "ReadWritePaths=/var/lib/tolom /var/spool/tolom" in server


def test_the_example_environment_names_every_setting() -> None:
    text = (DEPLOY / "tolom.env.example").read_text()
    named = set(re.findall(r"^#?(TOLOM_[A-Z0-9_]+)=", text, re.M))
    expected = {f"TOLOM_{name.upper()}" for name in Settings.model_fields}
    assert expected - named == set(), "settings missing from deploy/tolom.env.example"
    assert named - expected == set(), "deploy/tolom.env.example names unknown settings"


# --- nginx ----------------------------------------------------------------------------------


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=pay.example.kg", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def _nginx_config(folder: Path, https: int, http: int, upstreams: tuple[int, int]) -> Path:
    """The shipped site with test paths and ports, inside a minimal main configuration."""
    cert, key = _certificate(folder)
    site = (DEPLOY / "nginx" / "tolom.conf").read_text()
    replacements = {
        "/etc/letsencrypt/live/pay.example.kg/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/pay.example.kg/privkey.pem": str(key),
        "/var/log/nginx/": f"{folder}/",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{http};",
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{upstreams[0]} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{upstreams[1]} ",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    (folder / "tolom.conf").write_text(site)
    main = folder / "nginx.conf"
    temp = "\n".join(
        f"    {kind}_temp_path {folder}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main.write_text(
        f"user root;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {folder}/access.log;\n{temp}\n"
        f"    include {folder}/tolom.conf;\n}}\n"
    )
    return main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    if not NGINX.exists():
        pytest.fail(NGINX_HINT, pytrace=False)
    config = _nginx_config(tmp_path, _free_port(), _free_port(), (8001, 8002))
    done = subprocess.run(
        [str(NGINX), "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr, done.stderr


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


@dataclass
class _App:
    server: _Server
    thread: threading.Thread
    sock: socket.socket

    @classmethod
    def start(cls, settings: Settings, port: int = 0) -> _App:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        config = uvicorn.Config(
            create_app(settings=settings),
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            timeout_keep_alive=75,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        assert server.startup_over.wait(60) and server.started, "Tolom did not start"
        return cls(server, thread, sock)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive()


@dataclass
class _Front:
    """nginx on 127.0.0.1 in front of two Tolom servers, and what the test needs of them."""

    port: int
    apps: list[_App]
    engine: Engine
    settings: Settings
    auth: dict[str, str]

    def request(
        self,
        method: str,
        path: str,
        *,
        source: str = "127.0.0.2",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, str]:
        """One request over TLS from `source` (another loopback address than nginx's)."""
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=30, source_address=(source, 0)
        )
        try:
            conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def osmp(self, command: str, account: str, **extra: str) -> dict[str, object]:
        query = f"command={command}&txn_id={extra.pop('txn_id', new_txn_id())}&account={account}"
        query += "".join(f"&{k}={v}" for k, v in {"sum": "10.00", **extra}.items())
        status, body = self.request("GET", f"/gateway/osmp/sochi?{query}")
        assert status == 200, body
        return parse_answer(body)


@pytest.fixture
def front(tmp_path: Path, secret_key_file: Path) -> Iterator[_Front]:
    if not NGINX.exists():
        pytest.fail(NGINX_HINT, pytrace=False)
    url = f"sqlite:///{tmp_path / 'tolom.sqlite3'}"
    ledger_accounts._system_cache.clear()
    engine = make_engine(Settings(database_url=url))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)
    settings = Settings(
        database_url=url,
        secret_key_file=str(secret_key_file),
        agent_cache_seconds=0,
        trusted_proxies="127.0.0.1/32",
        request_spool_dir=str(tmp_path / "spool"),
        public_base_url="https://pay.example.kg",
    )
    secret = add_agent(engine, "optima", networks=["127.0.0.2/32"])
    auth = {"Authorization": "Basic " + base64.b64encode(f"optima:{secret}".encode()).decode()}
    apps = [_App.start(settings), _App.start(settings)]
    https = _free_port()
    config = _nginx_config(tmp_path, https, _free_port(), (apps[0].port, apps[1].port))
    nginx = subprocess.Popen(
        [str(NGINX), "-c", str(config), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", https)) == 0:
                    break
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield _Front(https, apps, engine, settings, auth)
    finally:
        nginx.terminate()
        nginx.wait(timeout=15)
        for app in apps:
            if app.thread.is_alive():
                app.stop()
        engine.dispose()


def test_through_nginx_tolom_sees_the_client_not_a_forged_header(front: _Front) -> None:
    inn = add_customer(front.engine)
    # The agent is allowed from 127.0.0.2 only; nginx talks to Tolom from 127.0.0.1.
    forged = {"X-Forwarded-For": "127.0.0.3"}
    txn_id = new_txn_id()
    status, body = front.request(
        "GET",
        f"/gateway/osmp/sochi?command=check&txn_id={txn_id}&account={inn}&sum=10.00",
        headers=forged,
    )
    assert status == 200 and parse_answer(body)["result"] == 0
    # From 127.0.0.3 claiming 127.0.0.2: refused, the claim is replaced by nginx.
    status, body = front.request(
        "GET",
        f"/gateway/osmp/sochi?command=check&txn_id={new_txn_id()}&account={inn}&sum=10.00",
        source="127.0.0.3",
        headers={"X-Forwarded-For": "127.0.0.2"},
    )
    assert parse_answer(body)["result"] != 0
    with front.engine.connect() as conn:
        peers = conn.execute(
            select(gateway_requests.c.peer).order_by(gateway_requests.c.id)
        ).scalars()
        assert list(peers) == ["127.0.0.2", "127.0.0.3"]


def test_nginx_refuses_oversized_bodies_and_hides_metrics(front: _Front) -> None:
    def declared(path: str, size: int) -> int:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", front.port, context=ssl._create_unverified_context(), timeout=30
        )
        try:
            conn.putrequest("POST", path)
            conn.putheader("Content-Length", str(size))
            conn.putheader("Content-Type", "application/json")
            conn.endheaders()  # no body: nginx decides on the declared length
            return conn.getresponse().status
        finally:
            conn.close()

    assert declared("/api/v1/customers", 4 * 1024 * 1024 + 1) == 413
    assert declared("/api/v1/agents/optima/registries", 256 * 1024 * 1024 + 1) == 413
    # A page's form: nginx holds the same 1 MB cap as Tolom, and refuses before sending
    # anything on (so the client gets 413, never a 502 from a refusal mid-stream).
    status, _ = front.request("POST", "/login", body=b"x" * (2 * 1024 * 1024))
    assert status == 413
    status, _ = front.request("GET", "/metrics")
    assert status == 404
    status, _ = front.request("GET", "/health")
    assert status == 200


def test_one_server_stops_and_nginx_keeps_answering(front: _Front) -> None:
    """A rolling restart under load: one app server stops gracefully and comes back, then
    the other stops; every check is answered (nginx moves refused connections, and gateway
    requests cut off by the stop, to the other server)."""
    inn = add_customer(front.engine)
    results: list[object] = []
    stop = threading.Event()

    def agent() -> None:
        while not stop.is_set():
            results.append(front.osmp("check", inn)["result"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        agents = [pool.submit(agent) for _ in range(4)]
        time.sleep(1.0)
        port = front.apps[0].port
        front.apps[0].stop()
        time.sleep(1.5)
        front.apps[0] = _App.start(front.settings, port)
        # nginx marked it failed for fail_timeout (5 s): stopping the other one sooner
        # leaves no live server (measured: 502 "no live upstreams"), so the rolling
        # restart waits that long (docs/deployment.md).
        time.sleep(6.0)
        front.apps[1].stop()
        time.sleep(1.5)
        stop.set()
        for future in agents:
            future.result()
    assert len(results) > 20
    assert set(results) == {0}
