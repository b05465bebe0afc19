"""Customer notifications: e-mail and SMS, rendered from templates, sent by the worker."""
