"""Events: what other systems and customers learn of, written to an outbox and delivered."""
