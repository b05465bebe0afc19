"""The double-entry ledger: accounts, journal entries, balances and their verification.

Sign convention: an account's balance is its credits minus its debits. A customer's
balance (what the company owes the customer) is therefore positive; an agent's clearing
account (what the agent collected for us and owes us) is negative.
"""

from tolom.ledger.accounts import LedgerAccount, create_account, system_account
from tolom.ledger.posting import InsufficientFunds, Transfer, open_entry, post, post_entry

__all__ = [
    "InsufficientFunds",
    "LedgerAccount",
    "Transfer",
    "create_account",
    "open_entry",
    "post",
    "post_entry",
    "system_account",
]
