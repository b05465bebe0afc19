"""The words agents read: OSMP `<comment>`s, REST problem titles and details, and the
core's refusal messages that both carry.

They are catalogue texts (keys `agent.*`, `tolom.texts`) always read in Russian: the OSMP
protocol has no language negotiation, agents' software compares some of these texts, and
the REST problems carry the core's messages, which are written before any adapter could
know a language. Every module that words something for an agent calls `t` from here, so
the language is chosen in this one place.
"""

from __future__ import annotations

from tolom.texts import DEFAULT, Texts, texts

t: Texts = texts(DEFAULT)
