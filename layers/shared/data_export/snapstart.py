"""Lambda SnapStart priming: the init work done before the snapshot, fresh credentials after each restore.

With SnapStart (the template's ``SnapStart`` parameter), Lambda runs a function's init once per published
version, snapshots the execution environment and resumes new environments from that snapshot. A handler
module calls ``register(...)`` with the factories its requests need (``wiring.export_service`` ...):

- before the snapshot, on a default boto3 session of our own, every factory is called (boto3 imported, the
  clients created, their service models and endpoint rules loaded and cached) and every contract model's
  validator built (they are ``defer_build``), so none of it is paid by a cold start;
- after each restore, the clients built before the snapshot are dropped (they hold the snapshot's
  credentials and connections): a new default session is made, sharing the first one's loader (the parsed
  models, which hold no secret), ``wiring`` is reset and the factories called again, so that every client
  resolves the restored environment's credentials and opens its own connections.

The hooks come from ``snapshot_restore_py``, which Lambda's Python runtimes (3.12+) provide; without it
(locally, in tests, in older runtimes) ``register`` does nothing and returns False. Without SnapStart the
runtime never calls the hooks, so the functions' init is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data_export import wiring

_state: dict[str, Any] = {}


def register(*factories: Callable[[], object]) -> bool:
    """Prime ``factories`` before the snapshot and again after each restore; False if there are no hooks."""
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found, unused-ignore]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, factories)
    register_after_restore(after_restore, factories)
    return True


def before_snapshot(factories: tuple[Callable[[], object], ...]) -> None:
    import boto3
    import botocore.session

    session = botocore.session.get_session()
    boto3.setup_default_session(botocore_session=session)
    _state["loader"] = session.get_component("data_loader")
    wiring.reset()
    for factory in factories:
        factory()
    build_models()


def after_restore(factories: tuple[Callable[[], object], ...]) -> None:
    import boto3
    import botocore.session

    session = botocore.session.get_session()
    loader = _state.get("loader")
    if loader is not None:
        session.register_component("data_loader", loader)  # service models: parsed before the snapshot
    boto3.setup_default_session(botocore_session=session)
    wiring.reset()  # clients with the snapshot's credentials and connections go
    for factory in factories:
        factory()


def build_models() -> int:
    """Build the validators of the contract models (``defer_build``) now; how many were built."""
    from pydantic import BaseModel

    from data_export import models

    built = 0
    for value in vars(models).values():
        if (
            isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == models.__name__
            and value.model_config.get("defer_build")
        ):
            value.model_rebuild(force=True)
            built += 1
    return built
