"""The names pages give to the codes they show (statuses, roles, channels, kinds): each
code's catalogue key, listed once.

A template names a code as `t.name(labels.order_status, o.status)` (every page's template
has `labels`), Python as `t.name(labels.SERVICE, code)`. The keys are marked with `N_` here,
where the values are listed, so that extraction finds them and the catalogue test keeps
each translated; a code the core adds later shows as itself until its key is added here.
"""

from __future__ import annotations

from types import SimpleNamespace

from tolom.texts import N_

ROLE = {
    "admin": N_("role.admin"),
    "operator": N_("role.operator"),
    "accountant": N_("role.accountant"),
    "auditor": N_("role.auditor"),
}

# Manual payments: who received the money.
CHANNEL = {"cash_desk": N_("channel.cash_desk"), "bank": N_("channel.bank")}

SERVICE = {"eds": N_("service.eds"), "sochi": N_("service.sochi")}

PAYMENT_STATUS = {
    "accepted": N_("payments.status.accepted"),
    "reversed": N_("payments.status.reversed"),
}

ORDER_STATUS = {
    "paid": N_("orders.status.paid"),
    "in_production": N_("orders.status.in_production"),
    "issued": N_("orders.status.issued"),
    "cancelled": N_("orders.status.cancelled"),
    "all": N_("orders.status.all"),
}

ORDER_TAB = {
    "paid": N_("orders.tab.paid"),
    "in_production": N_("orders.tab.in_production"),
    "issued": N_("orders.tab.issued"),
    "cancelled": N_("orders.tab.cancelled"),
    "all": N_("orders.tab.all"),
}

# Online applications: where identity verification stands, and the queue's tabs.
APPLICATION_STATUS = {
    "new": N_("applications.status.new"),
    "verified": N_("applications.status.verified"),
    "rejected": N_("applications.status.rejected"),
    "all": N_("applications.status.all"),
}

APPLICATION_TAB = {
    "new": N_("applications.tab.new"),
    "verified": N_("applications.tab.verified"),
    "rejected": N_("applications.tab.rejected"),
    "all": N_("applications.tab.all"),
}

ORDER_KIND = {"signature": N_("orders.kind.signature"), "carrier": N_("orders.kind.carrier")}

INVOICE_STATE = {
    "open": N_("invoices.state.open"),
    "paid": N_("invoices.state.paid"),
    "expired": N_("invoices.state.expired"),
    "cancelled": N_("invoices.state.cancelled"),
}

INVOICE_PAYMENT_STATUS = {
    "accepted": N_("invoice.payment_status.accepted"),
    "reversed": N_("invoice.payment_status.reversed"),
}

INVOICE_ORDER_STATUS = {
    "paid": N_("invoice.order_status.paid"),
    "in_production": N_("invoice.order_status.in_production"),
    "issued": N_("invoice.order_status.issued"),
    "cancelled": N_("invoice.order_status.cancelled"),
}

EVENT_STATUS = {
    "pending": N_("events.status.pending"),
    "delivered": N_("events.status.delivered"),
    "dead": N_("events.status.dead"),
}

EVENT_DESTINATION = {"sms": N_("events.destination.sms"), "email": N_("events.destination.email")}

CUSTOMER_STATUS = {"active": N_("customer.status.active"), "blocked": N_("customer.status.blocked")}

CUSTOMER_LANGUAGE = {"ru": N_("customer.language.ru"), "ky": N_("customer.language.ky")}

CHARGE_STATUS = {
    "awaiting_payment": N_("customer.charge_status.awaiting_payment"),
    "charged": N_("customer.charge_status.charged"),
    "cancelled": N_("customer.charge_status.cancelled"),
    "refunded": N_("customer.charge_status.refunded"),
}

ENTRY_KIND = {
    "payment": N_("customer.entry_kind.payment"),
    "reversal": N_("customer.entry_kind.reversal"),
    "charge": N_("customer.entry_kind.charge"),
    "charge_refund": N_("customer.entry_kind.charge_refund"),
    "order_refund": N_("customer.entry_kind.order_refund"),
}

# What a customer was told (the notification's event), by which channel, how it went.
CUSTOMER_EVENT = {
    "payment.accepted": N_("customer.event.payment.accepted"),
    "payment.reversed": N_("customer.event.payment.reversed"),
    "invoice.paid": N_("customer.event.invoice.paid"),
    "order.in_production": N_("customer.event.order.in_production"),
    "order.issued": N_("customer.event.order.issued"),
    "application.created": N_("customer.event.application.created"),
    "application.verified": N_("customer.event.application.verified"),
    "application.rejected": N_("customer.event.application.rejected"),
    "charge.settled": N_("customer.event.charge.settled"),
    "signature.expiring": N_("customer.event.signature.expiring"),
}

CUSTOMER_CHANNEL = {"sms": N_("customer.channel.sms"), "email": N_("customer.channel.email")}

CUSTOMER_DELIVERY = {
    "pending": N_("customer.delivery.pending"),
    "delivered": N_("customer.delivery.delivered"),
    "dead": N_("customer.delivery.dead"),
}

RECON_KIND = {
    "missing_ours": N_("recon.kind.missing_ours"),
    "missing_theirs": N_("recon.kind.missing_theirs"),
    "amount_mismatch": N_("recon.kind.amount_mismatch"),
    "account_mismatch": N_("recon.kind.account_mismatch"),
    "duplicate": N_("recon.kind.duplicate"),
}

RECON_RESOLUTION = {
    "accepted": N_("recon.resolution.accepted"),
    "explained": N_("recon.resolution.explained"),
    "reversed": N_("recon.resolution.reversed"),
}

RECON_ACTION = {
    "accept": N_("recon.action.accept"),
    "explain": N_("recon.action.explain"),
    "reverse": N_("recon.action.reverse"),
}

# A reconciliation day's state on its own page, in the month's cells ("open" counts the
# discrepancies left), and in the month's legend.
RECON_DAY_STATE = {
    "none": N_("recon.day.state.none"),
    "waiting": N_("recon.day.state.waiting"),
    "open": N_("recon.day.state.open"),
    "ready": N_("recon.day.state.ready"),
    "closed": N_("recon.day.state.closed"),
}

RECON_STATE = {
    "none": N_("recon.day.state.none"),
    "waiting": N_("recon.state.waiting"),
    "open": N_("recon.state.open"),
    "ready": N_("recon.state.ready"),
    "closed": N_("recon.state.closed"),
}

RECON_LEGEND = {
    "none": N_("recon.legend.none"),
    "waiting": N_("recon.legend.waiting"),
    "open": N_("recon.legend.open"),
    "ready": N_("recon.legend.ready"),
    "closed": N_("recon.legend.closed"),
}

# The audit actions an agent's page lists.
AGENT_ACTION = {
    "agent.create": N_("agents.action.agent.create"),
    "agent.configure": N_("agents.action.agent.configure"),
    "agent.set_limits": N_("agents.action.agent.set_limits"),
    "agent.enable": N_("agents.action.agent.enable"),
    "agent.disable": N_("agents.action.agent.disable"),
    "agent.rotate_secret": N_("agents.action.agent.rotate_secret"),
}

# What templates see as `labels` (lower-case names: `labels.order_status`).
FOR_TEMPLATES = SimpleNamespace(
    **{name.lower(): value for name, value in globals().copy().items() if name.isupper()}
)
