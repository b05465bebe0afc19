"""What a running server process holds: settings, the database engine, the caches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from tolom.agents.service import AgentDirectory
from tolom.apikeys import KeyDirectory
from tolom.db.engine import make_engine
from tolom.httpkit.strangers import StrangerLimit
from tolom.payments.spool import RequestSpool
from tolom.settings import Settings

if TYPE_CHECKING:
    from tolom.db.groupcommit import GroupCommit


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    agents: AgentDirectory
    keys: KeyDirectory
    spool: RequestSpool
    strangers: StrangerLimit  # unauthenticated gateway requests per address
    # The gateway step's group commit, one per event loop (its futures belong to that loop).
    group_commits: dict[asyncio.AbstractEventLoop, GroupCommit[Any, Any]] = field(
        default_factory=dict
    )
    # The read replica's engine (TOLOM_DATABASE_READ_URL) for the read-only back-office
    # lists and exports, or `engine` itself when none is set. Never for the gateway, for
    # anything that decides money, nor for a page showing what its user just changed:
    # a replica may lag (docs/operations.md#read-replica).
    read_engine: Engine | None = None

    def __post_init__(self) -> None:
        if self.read_engine is None:
            self.read_engine = self.engine

    @property
    def reads(self) -> Engine:
        """The engine the replica-safe pages read with (typed: never None after init)."""
        assert self.read_engine is not None
        return self.read_engine

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        return cls.on(settings, make_engine(settings))

    @classmethod
    def on(cls, settings: Settings, engine: Engine) -> Runtime:
        """A runtime around an existing engine (tests share theirs)."""
        ttl = settings.agent_cache_seconds
        return cls(
            settings,
            engine,
            AgentDirectory(engine, ttl),
            KeyDirectory(engine, ttl),
            RequestSpool(Path(settings.request_spool_dir)),
            StrangerLimit(settings.gateway_strangers_per_minute),
            read_engine=make_engine(settings, read_only=True)
            if settings.database_read_url
            else engine,
        )

    def remember_group_commit(
        self, loop: asyncio.AbstractEventLoop, lanes: GroupCommit[Any, Any]
    ) -> None:
        """Keep a loop's group commit; forget those of loops that have closed (tests make
        one loop per request)."""
        if len(self.group_commits) > 16:
            for old in [old for old in self.group_commits if old.is_closed()]:
                del self.group_commits[old]
        self.group_commits[loop] = lanes

    def close(self) -> None:
        self.engine.dispose()
        if self.read_engine is not None and self.read_engine is not self.engine:
            self.read_engine.dispose()
