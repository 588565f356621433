"""Money for people: Decimal in, '$1,200.00' (or '¥120,000', 'BHD 1.250') out, in the currency's own decimals."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "BRL": "R$", "INR": "₹", "CAD": "CA$", "AUD": "A$"}

# ISO 4217 minor units where they are not 2 (the list changes rarely; a currency not named here has 2).
MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF")
        + ("XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def decimals(currency: str) -> int:
    """How many decimals an amount in `currency` is written with (JPY 0, USD 2, KWD 3)."""
    return MINOR_UNITS.get(currency.upper(), 2)


def format_money(amount: Decimal | str | float | int, currency: str) -> str:
    places = decimals(currency)
    value = Decimal(str(amount)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{abs(value):,.{places}f}"
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"
