"""`Budget`, the caps on what requests may spend, and `BudgetSpent`, what one has spent.

Part of `llmclient.limits.spending`, which re-exports every name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from llmclient._checks import check_text
from llmclient.errors import ConfigurationError

__all__ = ["CAPS", "Budget", "BudgetSpent", "Estimate"]

_MILLION = 1_000_000
CAPS = ("total_tokens", "prompt_tokens", "completion_tokens", "cost")


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps on what requests may spend: tokens (total, prompt, completion) and cost.

    `cost` is in the currency of `input_price` and `output_price`, the prices per million
    prompt and completion tokens, both required with it. At least one cap must be set; a
    negative, NaN or infinite cap or price raises `ConfigurationError` naming it. `name`
    identifies the budget in errors and, with Redis, across processes.

    >>> Budget(total_tokens=10_000).cost_of(1_000, 500)
    0.0
    >>> Budget(cost=5.0, input_price=0.15, output_price=0.60).cost_of(1_000_000, 500_000)
    0.45
    """

    total_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    input_price: float | None = None
    output_price: float | None = None
    name: str = "budget"

    def __post_init__(self) -> None:
        for spec in fields(self):
            if spec.name == "name":
                continue
            value = getattr(self, spec.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{spec.name}={value!r}: must be a number or None")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ConfigurationError(
                    f"invalid argument: {spec.name}={value!r}: must be a finite number, at least 0"
                )
            if spec.name.endswith("_tokens"):
                if value != int(value):
                    raise ConfigurationError(
                        f"invalid argument: {spec.name}={value!r}: must be a whole number"
                    )
                object.__setattr__(self, spec.name, int(value))
            else:
                object.__setattr__(self, spec.name, float(value))
        check_text("name", self.name)
        if all(getattr(self, cap) is None for cap in CAPS):
            raise ConfigurationError(
                "invalid argument: Budget(): set at least one of " + ", ".join(CAPS)
            )
        if self.cost is not None and (self.input_price is None or self.output_price is None):
            raise ConfigurationError(
                f"invalid argument: cost={self.cost!r}: needs input_price and output_price "
                "(per million prompt and completion tokens)"
            )

    @classmethod
    def parse(cls, spec: str, name: str = "budget") -> Budget:
        """A budget from text: a number (total tokens), or `key=value` pairs split by commas.

        >>> Budget.parse("50000")
        Budget(total_tokens=50000)
        >>> Budget.parse("cost=2.5,input_price=0.15,output_price=0.6").cost
        2.5
        """
        text = spec.strip()
        values: dict[str, Any] = {"name": name}
        known = [f.name for f in fields(cls)]
        try:
            if text and "=" not in text:
                values["total_tokens"] = _number(text)
            else:
                for part in filter(None, (p.strip() for p in text.split(","))):
                    key, _, value = part.partition("=")
                    key = key.strip().replace("-", "_")
                    if key not in known:
                        raise ValueError(f"unknown key {key!r} (known: {', '.join(known)})")
                    values[key] = value.strip() if key == "name" else _number(value)
        except ValueError as error:
            raise ConfigurationError(f"invalid budget {spec!r}: {error}") from None
        return cls(**values)

    def cost_of(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What these tokens cost at the budget's prices (0 without prices)."""
        return (
            prompt_tokens * (self.input_price or 0.0)
            + completion_tokens * (self.output_price or 0.0)
        ) / _MILLION

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)]
        shown = [s for s in shown if not s.endswith("=None") and s != "name='budget'"]
        return "Budget(" + ", ".join(shown) + ")"


def _number(text: str) -> float:  # an int when whole: errors show 5, not 5.0
    """`1e6`, `250000`, `2.5` (underscores allowed) as a number."""
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number") from None
    return int(value) if value.is_integer() else value


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    """What a budget has spent (settled requests) and holds for requests in flight."""

    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    cost: float = 0.0
    reserved_tokens: float = 0.0  # estimates of the requests in flight
    reserved_cost: float = 0.0

    @property
    def total_tokens(self) -> float:
        """Prompt plus completion tokens spent."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Estimate:
    """One request's expected spend (or, once settled, its actual spend)."""

    prompt: float
    completion: float
    cost: float
