"""Reconciliation with agents (сверка) over the API: registry formats, registry uploads, the
calendar of agent-days, a day with its discrepancies, resolving them, closing and
reopening the day, the act and our own registry for the agent.

A thin adapter over `tolom.reconciliation`: the core imports, matches, resolves, closes
and audits; these modules read the request, check the caller's scope and answer in the
one outward shape (`reconciliation.shapes`).

- `schemas`: answers, bodies and parameters (the registry format is the core's own);
- `routes`: formats, the calendar, a day, resolving, closing, reopening;
- `uploads`: the registry upload (the body read after the caller is known, capped);
- `files`: the act (PDF, XLSX) and our registry in the agent's format;
- `refusals`: the core's refusals as problems.
"""

from __future__ import annotations

from tolom.api.operator.reconciliation.routes import router

__all__ = ["router"]
