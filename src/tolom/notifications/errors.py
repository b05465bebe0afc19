"""The one error a notification send raises: the worker records it and retries."""

from __future__ import annotations


class NotificationError(Exception):
    """Sending failed (server down or refusing, no template); worth retrying later.

    The message is short and safe to store in `deliveries.last_error`: it never holds
    a password or a token.
    """
