"""Argument checks shared by the public API: a wrong type raises `TypeError`, a wrong value
`ConfigurationError` (a `ValueError`), each naming the argument and the value."""

from __future__ import annotations

from llmclient.errors import ConfigurationError

__all__ = ["check_int", "check_number"]


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


def check_number(name: str, value: object, minimum: float) -> None:
    """`value` is an int or float (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={value!r}: must be a number")
    if value < minimum:
        raise ConfigurationError(f"invalid argument: {name}={value!r}: must be at least {minimum}")
