"""What a running server process holds: settings, the database engine, the agents' cache."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from tolom.agents.service import AgentDirectory
from tolom.db.engine import make_engine
from tolom.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    agents: AgentDirectory

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings)
        return cls(settings, engine, AgentDirectory(engine, settings.agent_cache_seconds))

    def close(self) -> None:
        self.engine.dispose()
