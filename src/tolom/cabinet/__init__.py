"""The customer's cabinet: who may sign in (`access`: one-time codes and sessions) and what
a signed-in customer sees of their own account (`overview`). The site's `/cabinet` pages
are its adapter (docs/customers.md#cabinet)."""
