"""Customers, the product catalogue and invoices."""
