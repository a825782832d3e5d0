"""What a replay substitutes in text: identifiers a request makes, timestamps."""

import re

# An identifier a request makes: a gateway id (`pay_` and 26 characters), or any other
# `prefix_` and 20 or more lower-case letters and digits (the sandbox's `sbx_ch_` references).
TOKEN = re.compile(r"(?<![0-9A-Za-z_])[a-z]+(?:_[a-z]+)*_[0-9a-z]{20,}(?![0-9A-Za-z_])")
# A timestamp written as text: SQLite's parameters, ISO 8601 in JSON bodies.
MOMENT = re.compile(
    r"(\d{4}-\d{2}-\d{2})([T ])(\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})?(?![\d:])"
)
