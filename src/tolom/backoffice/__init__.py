"""The back office: operators' and accountants' users, roles, sessions and web pages."""
