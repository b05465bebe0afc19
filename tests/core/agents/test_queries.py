"""Reading agents back for the adapters (`tolom.agents.queries`)."""

from __future__ import annotations

from sqlalchemy import Engine

from tests.factories import add_agent
from tolom.agents import admin, queries
from tolom.agents import service as agent_service


def test_names_list_agents_and_channels_unless_gateway_only(engine: Engine) -> None:
    add_agent(engine, "zeta")
    add_agent(engine, "alpha")
    with engine.connect() as conn:
        every = queries.names(conn)
        gateway = queries.names(conn, gateway_only=True)
        codes = queries.gateway_codes(conn)
    assert [a.code for a in gateway] == ["alpha", "zeta"]
    assert gateway[0] == queries.AgentName("alpha", "Агент alpha")
    assert codes == {"alpha", "zeta"}
    assert set(a.code for a in every) > codes  # the cash-desk and bank channels too
    assert [a.code for a in every] == sorted(a.code for a in every)


def test_one_gateway_agent(engine: Engine) -> None:
    add_agent(engine, "optima", services=["sochi"], timezone="Asia/Almaty")
    with engine.connect() as conn:
        channel = next(a.code for a in queries.names(conn) if a.code not in {"optima"})
        assert queries.is_gateway(conn, "optima") and not queries.is_gateway(conn, "nobody")
        assert not queries.is_gateway(conn, channel)
        assert queries.gateway_version(conn, "optima") == admin.current_version(conn, "optima")
        assert queries.gateway_version(conn, channel) is None
        assert queries.timezone_of(conn, "optima") == "Asia/Almaty"
        assert queries.timezone_of(conn, "nobody") is None
        assert queries.allowed_services(conn, "optima") == ["sochi"]
        assert queries.service_codes(conn) == ["eds", "sochi"]


def test_service_lines_show_own_limits_and_defaults(engine: Engine) -> None:
    add_agent(engine, "optima", services=["sochi"])
    with engine.begin() as conn:
        agent_service.set_service(conn, "optima", "sochi", allowed=True, min_amount=5_000)
        agent = agent_service.load(conn, "optima")
        assert agent is not None
        eds, sochi = queries.service_lines(conn, agent.id)
    assert (eds.code, eds.allowed, eds.min_override) == ("eds", False, None)
    assert eds.min_amount == eds.default_min and eds.min_field == ""
    assert (sochi.code, sochi.allowed, sochi.min_override) == ("sochi", True, 5_000)
    assert sochi.min_amount == 5_000 and sochi.min_field == "50.00"
    assert sochi.max_override is None and sochi.max_amount == sochi.default_max
