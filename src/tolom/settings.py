"""Typed settings, read from `TOLOM_*` environment variables (and an optional `.env` file)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tolom.addresses import IPNetwork


class Settings(BaseSettings):
    """Everything an operator may configure without touching code."""

    model_config = SettingsConfigDict(env_prefix="TOLOM_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/tolom.sqlite3",
        description="SQLAlchemy URL. SQLite file by default; in production "
        "postgresql+psycopg://user@host:5432/dbname.",
    )
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is "
        "believed. Empty: the socket's peer address is the client, always.",
    )
    agent_cache_seconds: float = Field(
        default=5.0,
        description="How long an agent's credentials, allow-list and limits are cached per "
        "process. A disabled agent or a new limit takes effect within this time.",
    )
    invoice_validity_days: int = Field(
        default=30, ge=1, description="Days an invoice can be paid before it expires."
    )
    lock_timeout_ms: int = Field(
        default=3000,
        ge=1,
        description="How long a payment may wait for a lock (PostgreSQL lock_timeout, SQLite "
        "busy_timeout) before it is answered 'temporary error, retry' instead of hanging.",
    )
    statement_timeout_ms: int = Field(
        default=15000, ge=1, description="PostgreSQL statement_timeout for every statement."
    )
    db_pool_size: int = Field(
        default=16, ge=1, description="Database connections per server process."
    )
    database_read_url: str = Field(
        default="",
        description="SQLAlchemy URL of a read replica for the read-only back-office lists and "
        "exports (payments, customers, audit log, reconciliation calendar, payment exports; "
        "docs/operations.md#read-replica). Empty: everything reads the primary. Nothing that "
        "decides money, and no page showing what its user just changed, reads it.",
    )
    database_pgbouncer: bool = Field(
        default=False,
        description="The database URL points at PgBouncer in transaction mode: psycopg "
        "prepares no statements and the PostgreSQL timeouts are set per transaction "
        "(SET LOCAL) instead of once per connection (docs/deployment.md#pgbouncer).",
    )
    max_request_bytes: int = Field(
        default=8192,
        ge=256,
        description="Largest agent request body accepted (OSMP and the REST agent API).",
    )
    max_api_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest JSON body of the operator API (413 above it). Read only after "
        "the API key is checked. Registry uploads have their own cap (256 MB).",
    )
    max_form_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest back-office form or other request body (413 above it). The "
        "registry upload page has its own cap (64 MB).",
    )

    language: str = Field(
        default="ru",
        description="The language of the `tolom` command's messages: ru, ky or en (anything "
        "else reads Russian). Pages speak each user's own language, notifications each "
        "customer's, agents' answers always Russian.",
    )

    gateway_strangers_per_minute: int = Field(
        default=30,
        ge=1,
        description="Unauthenticated agent-gateway requests recorded per client address per "
        "minute; past that they are answered 429 (Retry-After) without a record each.",
    )

    # --- the gateway step: group commit, the request spool, logs ------------------------
    gateway_batch_max: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="Most agent requests carried in one database transaction (group "
        "commit). 1 turns group commit off.",
    )
    gateway_batch_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Gateway transactions in flight at once per server process "
        "(PostgreSQL; SQLite has one writer and always uses 1). Requests arriving while "
        "they are busy queue and travel together in the next one.",
    )
    gateway_batch_wait_ms: float = Field(
        default=0,
        ge=0,
        le=1000,
        description="How long a transaction waits for more requests before it starts. "
        "0: never on purpose; batches form from the requests that queue under load.",
    )
    sandbox_slow_seconds: float = Field(
        default=35,
        ge=0,
        le=600,
        description="How long a sandbox agent waits for the answer about the slow magic "
        "account (longer than agents' usual 30 s timeout, to test theirs).",
    )
    request_spool_dir: str = Field(
        default="var/spool",
        description="Where request records go while the database is unreachable (one "
        "append-only file per process); they are moved into gateway_requests when it returns.",
    )
    # --- metrics and health (docs/operations.md "Metrics and health") ------------------
    metrics_enabled: bool = Field(
        default=True,
        description="Record the gateway's request, pay and database metrics. false: /metrics "
        "still answers, with the scrape-time gauges only.",
    )
    metrics_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=lambda: [
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ],
        description="Comma-separated CIDRs that may read /metrics (others get 403).",
    )
    metrics_dir: str | None = Field(
        default=None,
        description="Directory `tolom serve --workers N` shares metrics through (wiped at "
        "start). Empty: a temporary directory of its own, removed when it stops.",
    )
    reconciliation_deadline_days: int = Field(
        default=3,
        ge=1,
        description="A reconciliation day still open this many days after its business date "
        "counts as overdue (the tolom_reconciliation_days_overdue gauge).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Server and worker logs: one text line per event, or JSON lines.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The least severe log lines written."
    )

    # --- events: the outbox worker (`tolom worker`) -------------------------------------
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often an idle worker looks for due deliveries."
    )
    worker_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Deliveries one worker attempts at once (threads), each of a different "
        "line (destination and ordering key). `tolom worker --batch N` overrides it.",
    )
    worker_in_server: bool = Field(
        default=False,
        description="Also run the delivery worker inside each server process (`tolom serve "
        "--with-worker` sets it): one process to run for the demo and small installations. "
        "In production run `tolom worker` as its own service.",
    )
    probe_interval_seconds: float = Field(
        default=0,
        ge=0,
        description="Every this many seconds each worker runs the synthetic check (`tolom "
        "probe`: a sandbox agent pays and cancels through both gateways over HTTP) and "
        "reports it in /metrics and the log. 0: off. Needs TOLOM_PROBE_AGENT.",
    )
    probe_agent: str = Field(
        default="",
        description="The sandbox agent the worker's probe pays as (`tolom agent create CODE "
        "--sandbox`; its secret is kept sealed). A real agent is refused.",
    )
    probe_base_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$",
        description="Where the probe and the wallet simulator (page, `tolom simulate`, "
        "autopays) reach the gateways, as agents do. Empty: TOLOM_PUBLIC_BASE_URL.",
    )
    simulator_autopay_seconds: float = Field(
        default=0,
        ge=0,
        description="Every this many seconds each worker runs the wallet simulator's due "
        "autopays («Автоплатеж», `tolom simulate autopay`): each a check and a pay over HTTP "
        "as its sandbox agent, to TOLOM_PROBE_BASE_URL or TOLOM_PUBLIC_BASE_URL. 0: off "
        "(then an operator runs them from /simulator).",
    )
    delivery_max_attempts: int = Field(
        default=15,
        ge=1,
        description="Attempts before a delivery is dead-lettered (with the default backoff, "
        "about a day). Dead deliveries are listed and re-driven with `tolom events`.",
    )
    delivery_backoff_seconds: float = Field(
        default=10.0, gt=0, description="Wait before the first retry; doubles on each attempt."
    )
    delivery_backoff_max_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="The longest wait between two attempts."
    )
    delivery_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a worker owns a delivery it took; a worker killed mid-delivery "
        "leaves it to another after this.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a webhook receiver has to answer."
    )

    # --- webhook targets (SSRF protection, docs/events.md) -------------------------------
    webhook_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs of internal networks webhooks may be sent to. "
        "Empty: only public addresses; loopback, private, link-local (cloud metadata), CGNAT, "
        "multicast and reserved addresses are refused at registration and at delivery.",
    )

    # --- customer notifications ---------------------------------------------------------
    email_backend: Literal["smtp", "console"] = Field(
        default="console",
        description="smtp: send through the SMTP server below; console: write messages to "
        "the worker's log (development).",
    )
    smtp_host: str = Field(default="localhost", description="SMTP server.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str = Field(default="", description="Empty: no SMTP AUTH.")
    smtp_password: str = Field(default="")
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="none | starttls | ssl (implicit TLS, port 465)."
    )
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = Field(
        default="Tolom <noreply@localhost>", description="The From of customer e-mails."
    )
    sms_backend: Literal["http", "console"] = Field(
        default="console",
        description="http: POST to the SMS gateway at sms_url; console: write to the log.",
    )
    sms_url: str = Field(default="", description="The SMS gateway's HTTP endpoint.")
    sms_token: str = Field(default="", description="Bearer token for the SMS gateway.")
    sms_sender: str = Field(default="Tolom", description="Sender name shown on the phone.")

    # --- signature orders ---------------------------------------------------------------
    signature_validity_months: int = Field(
        default=12, ge=1, description="How long an issued signature is valid."
    )
    signature_expiry_warning_days: int = Field(
        default=30, ge=1, description="Signatures expiring within this many days are listed."
    )
    request_log_retention_months: int = Field(
        default=24,
        ge=1,
        description="Months of the request log (gateway_requests) kept; `tolom archive run` "
        "exports older months to files and drops them (docs/operations.md#growth).",
    )
    events_retention_months: int = Field(
        default=24,
        ge=1,
        description="Months of events and their deliveries kept; `tolom archive run` exports "
        "and drops older months, never one with a delivery still pending.",
    )
    order_refund_percent_in_production: int = Field(
        default=50,
        ge=0,
        le=100,
        description="Refund, in percent of the order's price, when an order is cancelled "
        "after production started. A paid order not yet in production is refunded in full; "
        "an issued one is not cancelled.",
    )

    # --- the back office -----------------------------------------------------------------
    web_session_hours: float = Field(
        default=12, gt=0, description="How long a back-office login lasts."
    )
    login_lockout_after: int = Field(
        default=5,
        ge=1,
        description="Failed logins in a row for one username from one client address that "
        "lock that username out from that address.",
    )
    login_lockout_minutes: float = Field(
        default=15,
        gt=0,
        description="How long a username is refused from an address it was locked out from.",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie over HTTPS only. On by itself whenever "
        "public_base_url is https://; false lets the demo work on http://127.0.0.1.",
    )

    # --- back-office login throttling and password hashing (docs/backoffice.md) --------
    login_address_limit: int = Field(
        default=20,
        ge=1,
        description="Failed logins from one client address within the throttle window after "
        "which that address is answered 429 until the window ends.",
    )
    login_username_limit: int = Field(
        default=50,
        ge=1,
        description="Failed logins for one username, from every address, within the throttle "
        "window after which each further attempt at that name waits "
        "`login_username_pause_seconds` (429). It slows guessing; it never locks the name.",
    )
    login_throttle_window_minutes: float = Field(
        default=15, gt=0, description="The window the address and username counts cover."
    )
    login_username_pause_seconds: float = Field(
        default=30,
        gt=0,
        description="The wait between attempts at a username past `login_username_limit`.",
    )
    password_hash_threads: int = Field(
        default=2,
        ge=1,
        description="Threads per server process that hash and verify passwords (argon2), "
        "apart from the threads that serve agents.",
    )
    password_hash_queue: int = Field(
        default=16,
        ge=0,
        description="Password hashes that may wait for one of those threads; beyond that a "
        "login is answered 429 (try again shortly) instead of queueing.",
    )

    # --- secrets at rest (docs/operations.md) --------------------------------------------
    secret_key_file: str = Field(
        default="",
        description="The key file that seals agents' REST signing keys and webhook secrets "
        "in the database: one key per line, the first seals, all open (`tolom secrets "
        "init`, `rotate`). Back it up apart from the database. Empty: secret.key next to a "
        "SQLite database, created on first start; required with PostgreSQL.",
    )

    # --- the customer's online application (docs/customers.md#apply) -------------------
    apply_offices: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Бишкек", "Ош", "Жалал-Абад"],
        min_length=1,
        description="Comma-separated offices where an online applicant's identity is "
        "verified: the /apply form offers them in this order.",
    )
    apply_per_hour: int = Field(
        default=5,
        ge=1,
        description="Online applications accepted per client address per hour; more are "
        "refused (429) until the hour has passed.",
    )
    apply_min_seconds: float = Field(
        default=3.0,
        ge=0,
        description="The least time between showing the /apply form and sending it: faster "
        "is a robot's, refused.",
    )

    # --- the customer's cabinet (docs/customers.md#cabinet) -----------------------------
    cabinet_code_minutes: float = Field(
        default=10, gt=0, le=60, description="How long a sign-in code may be used."
    )
    cabinet_code_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Wrong codes that end a sign-in: the customer must ask for a new code.",
    )
    cabinet_resend_seconds: float = Field(
        default=60, ge=0, description="The least time between two codes for one INN."
    )
    cabinet_codes_per_inn: int = Field(
        default=5, ge=1, description="Codes sent for one INN per hour, whoever asks."
    )
    cabinet_codes_per_address: int = Field(
        default=20, ge=1, description="Codes asked for from one client address per hour."
    )
    cabinet_session_minutes: float = Field(
        default=60, gt=0, description="How long a customer stays signed in to the cabinet."
    )

    # --- documents: receipts and invoices (docs/documents.md) ---------------------------
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Where customers reach this server: receipt QR codes and links point to "
        "{public_base_url}/r/{token}. In production the public https:// address.",
    )
    company_name: str = Field(
        default="«ДОС ТЭК ГРУПП»",
        min_length=1,
        description="The payee named on receipts, invoices and the public receipt page.",
    )
    company_inn: str = Field(default="", description="The company's INN; empty: not printed.")
    company_address: str = Field(default="", description="Empty: not printed.")
    company_phone: str = Field(default="", description="Empty: not printed.")
    company_bank_name: str = Field(
        default="", description="The bank of the account below; empty: not printed."
    )
    company_bank_bik: str = Field(default="", description="The bank's BIK; empty: not printed.")
    company_bank_account: str = Field(
        default="",
        description="The settlement account (р/с) for bank transfers. Empty (the default): "
        "invoices print no bank requisites and tell the payer to ask for them, so a "
        "placeholder account can never reach a customer.",
    )
    payment_instructions_file: str = Field(
        default="",
        description="A JSON file of payment instructions to print on invoices instead of the "
        "shipped tolom/data/payment_instructions.json (same format). Empty: the shipped one.",
    )

    # --- XLSX registries: limits of the child process that reads them (docs/reconciliation.md)
    registry_xlsx_max_rows: int = Field(
        default=1_048_576,
        ge=1,
        description="Rows an XLSX registry's sheet may have (Excel's own limit by default); "
        "a row numbered past it refuses the file.",
    )
    registry_xlsx_max_columns: int = Field(
        default=256,
        ge=1,
        description="The last column an XLSX registry may hold a value in; further refuses it.",
    )
    registry_xlsx_max_unpacked_mb: int = Field(
        default=1024,
        ge=1,
        description="Megabytes an XLSX registry's parts may unpack to together, as its zip "
        "declares them (a million-line sheet is about 300 MB). Checked before unpacking.",
    )
    registry_xlsx_max_ratio: int = Field(
        default=100,
        ge=2,
        description="How many times a part over 1 MB may be compressed. Real sheets compress "
        "about 10 times; whitespace or repeated filler (a zip bomb) about 1000.",
    )
    registry_xlsx_timeout_seconds: float = Field(
        default=600,
        gt=0,
        description="How long reading one XLSX registry may take; then its child process is "
        "killed and the file refused.",
    )
    registry_xlsx_max_memory_mb: int = Field(
        default=4096,
        ge=256,
        description="Address space of the child process reading an XLSX registry (a "
        "million-line sheet needs about 1 GB); past it the file is refused.",
    )

    # --- serving in production (SECURITY.md) --------------------------------------------
    allow_insecure_http: bool = Field(
        default=False,
        description="Let `tolom serve` listen on a non-loopback address although the public "
        "base URL is plain http (cookies then travel unencrypted). Only for a closed test "
        "network; in production put TLS in front and set an https:// public_base_url.",
    )

    @property
    def https(self) -> bool:
        """Whether browsers reach us over https: then cookies are Secure and HSTS is sent."""
        return self.public_base_url.startswith("https://")

    @property
    def secure_cookies(self) -> bool:
        return self.session_cookie_secure or self.https

    @property
    def own_gateways_url(self) -> str:
        """Where our own tools (the probe, the simulator's autopays) reach the gateways, as
        agents do."""
        return self.probe_base_url or self.public_base_url

    @field_validator("public_base_url", mode="after")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("apply_offices", mode="before")
    @classmethod
    def _split_offices(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator(
        "trusted_proxies", "webhook_allowed_networks", "metrics_allowed_networks", mode="before"
    )
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [
                ipaddress.ip_network(p.strip(), strict=False) for p in value.split(",") if p.strip()
            ]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
