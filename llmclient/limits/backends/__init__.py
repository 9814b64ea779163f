"""Where an endpoint's admission state lives: in this process (`local`), or shared remotely.

A backend hands out one `EndpointState` per endpoint key; `Endpoint` talks only to that.
"""

from llmclient.limits.backends.base import EndpointState, LimitBackend
from llmclient.limits.backends.local import LocalBackend, LocalState

__all__ = ["EndpointState", "LimitBackend", "LocalBackend", "LocalState"]
