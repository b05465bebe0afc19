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
    max_request_bytes: int = Field(
        default=8192, ge=256, description="Largest OSMP request body accepted."
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
    request_spool_dir: str = Field(
        default="var/spool",
        description="Where request records go while the database is unreachable (one "
        "append-only file per process); they are moved into gateway_requests when it returns.",
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
        default=5, ge=1, description="Failed logins in a row that lock a user out."
    )
    login_lockout_minutes: float = Field(
        default=15, gt=0, description="How long a locked-out user is refused."
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie over HTTPS only. Set true in production (behind "
        "TLS); false lets the demo work on http://127.0.0.1.",
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

    @field_validator("public_base_url", mode="after")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
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
