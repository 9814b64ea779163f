"""Argument checks shared by the public API: a wrong type raises `TypeError`, a wrong value
`ConfigurationError` (a `ValueError`), each naming the argument and the value."""

from __future__ import annotations

import math

from llmclient.errors import ConfigurationError

__all__ = ["check_int", "check_number", "check_text"]


def check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> None:
    """`value` is an int (not a bool) of at least `minimum`, or None when `optional`.

    >>> check_int("batch_size", 0, 1)
    Traceback (most recent call last):
    ...
    llmclient.errors.ConfigurationError: invalid argument: batch_size=0: must be at least 1
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name}={value!r}: must be {kind}")
    if value < minimum:
        raise ConfigurationError(f"invalid argument: {name}={value!r}: must be at least {minimum}")


def check_number(
    name: str, value: object, minimum: float, *, above: bool = False, finite: bool = False
) -> None:
    """`value` is an int or float (not a bool, never NaN) of at least `minimum`, or more than
    it when `above`; not infinite when `finite`.

    >>> check_number("wait_timeout", float("nan"), 0, above=True)
    Traceback (most recent call last):
    ...
    llmclient.errors.ConfigurationError: invalid argument: wait_timeout=nan: must be more than 0
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={value!r}: must be a number")
    low = value <= minimum if above else value < minimum
    if math.isnan(value) or low or (finite and math.isinf(value)):
        bound = f"more than {minimum}" if above else f"at least {minimum}"
        kind = "finite and " if finite else ""
        raise ConfigurationError(f"invalid argument: {name}={value!r}: must be {kind}{bound}")


def check_text(name: str, value: object) -> None:
    """`value` is a non-empty str.

    >>> check_text("prefix", "")
    Traceback (most recent call last):
    ...
    llmclient.errors.ConfigurationError: invalid argument: prefix='': must not be empty
    """
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r}: must be a str")
    if not value:
        raise ConfigurationError(f"invalid argument: {name}={value!r}: must not be empty")
