"""Kubernetes resource quantities ("500m", "1.5", "512Mi", "1e3"), parsed to exact decimals.

The grammar is the one of k8s.io/apimachinery's resource.Quantity: a signed decimal number and
an optional suffix, binary (Ki, Mi, ... Ei), decimal SI (n, u, m, "", k, M, G, T, P, E) or a
decimal exponent (e3, E-2).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_NUMBER_CHARS = frozenset("0123456789.")


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity; the message says why."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a Kubernetes quantity, e.g. `parse_quantity("512Mi") == 536870912`."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    if body[:1] in "+-":
        body = body[1:]
    end = 0
    while end < len(body) and body[end] in _NUMBER_CHARS:
        end += 1
    number, suffix = body[:end], body[end:]
    if not any(c.isdigit() for c in number) or number.count(".") > 1:
        raise QuantityError(f"{text!r} does not start with a number")
    try:
        value = Decimal(number)
    except InvalidOperation:  # pragma: no cover - excluded by the checks above
        raise QuantityError(f"{text!r} does not start with a number") from None
    return sign * value * _multiplier(text, suffix)


def _multiplier(text: str, suffix: str) -> Decimal:
    if suffix in _BINARY:
        return Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return Decimal(10) ** _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        exponent = suffix[1:].removeprefix("+")
        digits = exponent.removeprefix("-")
        if digits.isdigit() and digits.isascii():
            return Decimal(10) ** int(exponent)
    raise QuantityError(
        f"{text!r} has an unknown unit {suffix!r} (use m for CPU, Mi or Gi for memory; "
        "see Kubernetes resource quantities)"
    )
