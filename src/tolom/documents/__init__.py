"""Documents people read: payment receipts (PDF and the public confirmation page) and
invoice PDFs with the company's payment instructions. See docs/documents.md."""
