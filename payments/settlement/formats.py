"""Which parser reads which acquirer's settlement file: the sandbox's CSV
(`payments.settlement.sandbox_file`, for every sandbox instance) and the national schemes'
files (`payments.settlement.scheme_files`) by provider name. Stripe's balance transactions
export plugs in later by implementing `SettlementParser` and being named here."""

from __future__ import annotations

from collections.abc import Callable

from payments.settlement.parsers import MAX_FILE_BYTES, SettlementParser
from payments.settlement.sandbox_file import SandboxCsvParser
from payments.settlement.scheme_files import LAYOUTS, parser_factory

ParserFactory = Callable[[int], SettlementParser]  # built with the file-size limit
FORMATS: dict[str, ParserFactory] = {
    "sandbox": lambda limit: SandboxCsvParser(max_file_bytes=limit),
    **{provider: parser_factory(layout) for provider, layout in LAYOUTS.items()},
}


def parser_for(
    file_format: str, *, max_file_bytes: int = MAX_FILE_BYTES
) -> SettlementParser | None:
    """The parser of a file format (`sandbox` for every sandbox instance), or None."""
    factory = FORMATS.get(file_format)
    return factory(max_file_bytes) if factory is not None else None
