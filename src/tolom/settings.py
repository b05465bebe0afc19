"""Typed settings, read from `TOLOM_*` environment variables (and an optional `.env` file)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated

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
