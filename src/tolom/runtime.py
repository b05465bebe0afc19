"""What a running server process holds: settings, the database engine, the caches."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from tolom.agents.service import AgentDirectory
from tolom.apikeys import KeyDirectory
from tolom.db.engine import make_engine
from tolom.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    agents: AgentDirectory
    keys: KeyDirectory

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        return cls.on(settings, make_engine(settings))

    @classmethod
    def on(cls, settings: Settings, engine: Engine) -> Runtime:
        """A runtime around an existing engine (tests share theirs)."""
        ttl = settings.agent_cache_seconds
        return cls(settings, engine, AgentDirectory(engine, ttl), KeyDirectory(engine, ttl))

    def close(self) -> None:
        self.engine.dispose()
