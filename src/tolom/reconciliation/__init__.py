"""Reconciliation with agents (сверка): registries in, matched against our payments per
agent and business day, discrepancies resolved with a reason, the day closed with an act.

- `formats`: how each agent writes its registry (QIWI-style text, CSV, XLSX);
- `parsing`: a registry file read into lines, or refused naming the line and field
  (`xlsx`: workbooks, read in a child process under limits);
- `registries`: storing a registry (re-import is a no-op, a corrected one supersedes);
- `matching`: our payments against the registry, in SQL, into discrepancies;
- `days`: resolving discrepancies and closing (and reopening) an agent's day;
- `shapes`: the one outward shape of summaries and discrepancies (API, CLI, watch);
- `act`, `outbound`, `watch`: the act (PDF, XLSX), our registry in the agent's format,
  the watched folder.
"""
