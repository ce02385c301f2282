"""conclib: ask and tell Rust actors by URN through Redis.

The Python client of conclib's Redis proxy (wire protocol version 1, MessagePack codec).

asyncio::

    client = await conclib.connect("redis://127.0.0.1:6379", namespace="shop")
    total = await client.ask("counter", "Add", {"n": 5}, timeout=2.0)
    await client.tell("counter", "Record", 7, priority="high")
    await client.close()

blocking (scripts, WSGI)::

    with conclib.Client("redis://127.0.0.1:6379", namespace="shop") as client:
        total = client.ask("counter", "Add", {"n": 5})

Errors are subclasses of :class:`ConclibError`.
"""

from .blocking import BlockingSubscription, Client
from .client import DEFAULT_URL, AsyncClient, Message, Priority, connect
from .codec import Encoded
from .durability import Durability
from .durable import ExecutionInfo, Finished, StepInfo
from .errors import (
    ActorStopped,
    BadRequest,
    Closed,
    CodecError,
    ConclibError,
    ConfigError,
    HandlerError,
    Lagged,
    MailboxFull,
    NoResponse,
    NotExposed,
    NotReplicated,
    Overloaded,
    Panicked,
    ProtocolError,
    RedisError,
    Timeout,
    TooLarge,
    Unavailable,
    UnknownMessage,
    UnknownUrn,
    UnsupportedVersion,
)
from .metrics import AskEvent, AskHook, prometheus_hook
from .protocol import PROTOCOL_VERSION, Status
from .topics import Subscription

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "PROTOCOL_VERSION",
    "ActorStopped",
    "AskEvent",
    "AskHook",
    "AsyncClient",
    "BlockingSubscription",
    "BadRequest",
    "Client",
    "Closed",
    "CodecError",
    "ConclibError",
    "ConfigError",
    "Durability",
    "Encoded",
    "ExecutionInfo",
    "Finished",
    "HandlerError",
    "Lagged",
    "MailboxFull",
    "Message",
    "NoResponse",
    "NotExposed",
    "NotReplicated",
    "Overloaded",
    "Panicked",
    "Priority",
    "ProtocolError",
    "RedisError",
    "Status",
    "StepInfo",
    "Subscription",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "UnknownMessage",
    "UnknownUrn",
    "UnsupportedVersion",
    "connect",
    "prometheus_hook",
]
