"""A general double-entry book: accounts, balanced journal transactions, postings, balances."""

from ledger.book import (
    AccountBalance,
    AccountRef,
    Direction,
    Entry,
    Kind,
    LedgerError,
    TransactionSpec,
    UnbalancedTransaction,
    account_balance,
    balances,
    post,
    trial_balance,
)
from ledger.models import Account, JournalTransaction, LedgerBase, Posting

__all__ = [
    "Account",
    "AccountBalance",
    "AccountRef",
    "Direction",
    "Entry",
    "JournalTransaction",
    "Kind",
    "LedgerBase",
    "LedgerError",
    "Posting",
    "TransactionSpec",
    "UnbalancedTransaction",
    "account_balance",
    "balances",
    "post",
    "trial_balance",
]
