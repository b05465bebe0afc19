"""The wallet simulator (issue 17): the customer's side of the seeds' «Оптима 24» and
MegaPay journeys, played through the real OSMP gateway over HTTP as a sandbox agent.

`journeys` is the one place the journeys live (the back office's `/simulator` page and
`tolom simulate` both call it); `favourites` keeps the simulated MegaPay wallet's
«Избранное» templates and «Автоплатеж» schedules.
"""
