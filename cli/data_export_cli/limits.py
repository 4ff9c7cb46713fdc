"""AWS's limits, as the local stack enforces them: the functions run in-process, but each is held to what
Lambda, SQS and Step Functions would hold it to on AWS, so that contention shows locally (and in tests, with
the limits lowered) before it shows in production.

- **Concurrency.** A function runs at most its ``ReservedConcurrentExecutions`` (resolved from the
  template's parameters) events at once; functions without one share the account's unreserved
  concurrency (1,000 less every reservation, at least 100 as Lambda keeps). An invocation past that is
  throttled: Lambda's ``TooManyRequestsException`` (HTTP 429), which Step Functions names
  ``Lambda.TooManyRequestsException``. Each concurrent event runs in an execution environment of its own (a
  fresh copy of the handler's module, reused while warm), serving one event at a time as on AWS: module
  state such as Powertools' resolver (its current event) or batch processor is never shared by two events.
- **Timeout.** A handler still running at its ``Timeout`` is answered as Lambda answers it, an unhandled
  ``Sandbox.Timedout`` error ("Task timed out after N seconds"), and its environment is discarded. Python
  cannot kill a thread: the handler runs on in the background, whatever it returns is dropped, and it may
  still write to AWS until it ends (the domain's conditional writes on attempt ids are what protects a job
  on AWS too, where a timed-out Lambda may have written up to its last moment).
- **Payloads.** 6 MB for an invocation's request (``RequestEntityTooLargeException``, HTTP 413) and for its
  response (an unhandled ``Function.ResponseSizeTooLarge`` error).
- **SQS event sources.** The poller receives only while the function has free concurrency, and never more
  batches at once than the event source's ``ScalingConfig.MaximumConcurrency``; visibility timeouts and
  ``maxReceiveCount`` are the template's (moto moves a message received too often to its dead-letter queue).
- **Step Functions.** moto's engine enforces the Map's ``MaxConcurrency`` and the 256 KiB state payload
  (``States.DataLimitExceeded``) itself; the 25,000 events of an execution's history it does not, so the
  local stack does (``HistoryLimit``): the event that would be the 25,000th, unless it ends the execution
  successfully, fails the execution with ``States.Runtime`` instead, as AWS fails it.

Every limit can be lowered for tests (``Limits(...)``) or for ``data-export local serve`` (environment
variables, ``Limits.from_environment``); the runtime counts what it enforced (``report``)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

ACCOUNT_CONCURRENCY = 1000  # Lambda's default concurrency per account and region
MIN_UNRESERVED_CONCURRENCY = 100  # Lambda keeps this much unreserved, whatever the reservations
INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation: request and response
HISTORY_EVENTS = 25_000  # events of one Step Functions execution's history
HISTORY_ERROR = "States.Runtime"

ENVIRONMENT_PREFIX = "DATA_EXPORT_LOCAL_"


# -- errors, as Lambda reports them ----------------------------------------------------------------------
class LambdaLimitError(Exception):
    """Lambda refused the invocation itself (the handler never ran): an error answer of the Invoke API."""

    status = 500
    error_type = "ServiceException"
    body: dict[str, Any]

    def __init__(self, message: str, **body: Any) -> None:
        super().__init__(message)
        self.body = {**body, "Type": "User", "message": message}


class TooManyRequestsError(LambdaLimitError):
    status = 429
    error_type = "TooManyRequestsException"

    def __init__(self, function: str, reserved: bool) -> None:
        reason = (
            "ReservedFunctionConcurrentInvocationLimitExceeded"
            if reserved
            else "ConcurrentInvocationLimitExceeded"
        )
        super().__init__("Rate Exceeded.", Reason=reason)
        self.function = function


class RequestTooLargeError(LambdaLimitError):
    status = 413
    error_type = "RequestEntityTooLargeException"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Request must be smaller than {limit} bytes for the InvokeFunction operation (was {size})"
        )


class FunctionError(Exception):
    """The function ran and failed in a way Lambda, not the handler, names: an unhandled function error
    whose ``errorType`` is ``error_type`` (the Invoke API's ``X-Amz-Function-Error: Unhandled``)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class FunctionTimedOutError(FunctionError):
    def __init__(self, request_id: str, seconds: float) -> None:
        super().__init__(
            "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"
        )


# -- the limits ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What the local stack enforces. The defaults are AWS's and the template's; every field can be lowered
    (the mappings are keyed by the template's logical ids)."""

    enabled: bool = True
    account_concurrency: int = ACCOUNT_CONCURRENCY
    # Function -> its reserved concurrency, in place of the template's ReservedConcurrentExecutions.
    reserved_concurrency: Mapping[str, int] = field(default_factory=dict)
    # Function -> ScalingConfig.MaximumConcurrency of its SQS event sources, in place of the template's.
    maximum_concurrency: Mapping[str, int] = field(default_factory=dict)
    # Function -> its Timeout in seconds, in place of the template's; then every timeout is multiplied by
    # timeout_scale (and LambdaContext counts down from the result).
    timeouts: Mapping[str, float] = field(default_factory=dict)
    timeout_scale: float = 1.0
    invoke_payload_bytes: int = INVOKE_PAYLOAD_BYTES
    history_events: int = HISTORY_EVENTS
    # Queue -> VisibilityTimeout / the RedrivePolicy's maxReceiveCount, in place of the template's.
    visibility_timeouts: Mapping[str, int] = field(default_factory=dict)
    max_receive_counts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def off(cls) -> Limits:
        return cls(enabled=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The limits as ``DATA_EXPORT_LOCAL_*`` variables lower them (``data-export local serve``):

        - ``DATA_EXPORT_LOCAL_LIMITS=off`` enforces none of them;
        - ``..._CONCURRENCY="ExportWorkerFunction=2,ExportBuildUnitFunction=8"`` (reserved concurrency),
          ``..._ACCOUNT_CONCURRENCY=50``, ``..._MAXIMUM_CONCURRENCY="ExportWorkerFunction=2"`` (SQS);
        - ``..._TIMEOUTS="ExportBuildUnitFunction=30"``, ``..._TIMEOUT_SCALE=0.1``;
        - ``..._PAYLOAD_BYTES=...``, ``..._HISTORY_EVENTS=...``;
        - ``..._VISIBILITY_TIMEOUTS="ExportQueue=30"``, ``..._MAX_RECEIVE_COUNTS="ExportQueue=2"``."""
        env = os.environ if environ is None else environ

        def raw(name: str) -> str:
            return env.get(ENVIRONMENT_PREFIX + name, "").strip()

        switch = raw("LIMITS").lower()
        if switch in ("off", "0", "false", "no"):
            return cls.off()
        if switch not in ("", "on", "1", "true", "yes"):
            raise ValueError(f"{ENVIRONMENT_PREFIX}LIMITS must be on or off, not {switch!r}")
        values: dict[str, Any] = {}
        for name, target, parse in (
            ("CONCURRENCY", "reserved_concurrency", int),
            ("MAXIMUM_CONCURRENCY", "maximum_concurrency", int),
            ("TIMEOUTS", "timeouts", float),
            ("VISIBILITY_TIMEOUTS", "visibility_timeouts", int),
            ("MAX_RECEIVE_COUNTS", "max_receive_counts", int),
        ):
            if raw(name):
                values[target] = _pairs(ENVIRONMENT_PREFIX + name, raw(name), parse)
        for name, target, number in (
            ("ACCOUNT_CONCURRENCY", "account_concurrency", int),
            ("TIMEOUT_SCALE", "timeout_scale", float),
            ("PAYLOAD_BYTES", "invoke_payload_bytes", int),
            ("HISTORY_EVENTS", "history_events", int),
        ):
            if raw(name):
                values[target] = number(raw(name))
        return cls(**values)

    def describe(self) -> str:
        """What differs from AWS's defaults, for the console (``data-export local serve``)."""
        if not self.enabled:
            return "AWS limits: off"
        changed = [
            f"{item.name}={getattr(self, item.name)}"
            for item in fields(self)
            if item.name != "enabled" and getattr(self, item.name) != getattr(Limits(), item.name)
        ]
        return "AWS limits: on" + (f" ({', '.join(changed)})" if changed else " (the template's and AWS's)")


def _pairs(variable: str, text: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"{variable}: expected Name=value[,Name=value...], got {item!r}")
        pairs[name.strip()] = parse(value.strip())
    return pairs


def payload_size(value: Any) -> int:
    """Bytes of ``value`` as JSON, as an invocation carries it; a value JSON cannot carry raises
    ``FunctionError`` (Runtime.MarshalError), as Lambda's runtime answers a result it cannot serialize."""
    try:
        return len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise FunctionError("Runtime.MarshalError", f"Unable to marshal response: {exc}") from exc


# -- concurrency -----------------------------------------------------------------------------------------
@dataclass
class FunctionStats:
    limit: int
    reserved: bool
    timeout_seconds: float
    invocations: int = 0
    peak: int = 0  # the most events run at once
    recent_peak: int = 0  # the most at once since reset_peaks (a test's own measure)
    environments: int = 0  # execution environments created (cold starts)
    throttles: int = 0
    timeouts: int = 0
    errors: int = 0  # handler exceptions (timeouts not included)
    oversized_requests: int = 0
    oversized_responses: int = 0
    busy_seconds: float = 0.0


@dataclass
class QueueStats:
    batches: int = 0
    received: int = 0
    deleted: int = 0
    returned: int = 0  # left for redelivery (reported failed, or the invocation failed)
    highest_receive_count: int = 0


@dataclass
class Environment:
    """One execution environment of a function: a handler of its own (index 0 is the module as imported)."""

    function: str
    index: int
    handler: Any = None


class Concurrency:
    """Every function's events in flight, against its reserved concurrency or the account's unreserved pool,
    and its warm execution environments."""

    def __init__(self, limits: Mapping[str, int | None], account: int, timeouts: Mapping[str, float]) -> None:
        reserved = sum(limit for limit in limits.values() if limit is not None)
        self.unreserved_limit = max(account - reserved, MIN_UNRESERVED_CONCURRENCY)
        self.stats = {
            name: FunctionStats(
                limit=limit if limit is not None else self.unreserved_limit,
                reserved=limit is not None,
                timeout_seconds=timeouts[name],
            )
            for name, limit in limits.items()
        }
        self.queues: dict[str, QueueStats] = {}
        self._busy = dict.fromkeys(limits, 0)
        self._unreserved_busy = 0
        self._idle: dict[str, list[Environment]] = {name: [] for name in limits}
        self._created = dict.fromkeys(limits, 0)
        self._condition = threading.Condition()

    def _free(self, function: str) -> bool:
        stats = self.stats[function]
        if self._busy[function] >= stats.limit:
            return False
        return stats.reserved or self._unreserved_busy < self.unreserved_limit

    def acquire(self, function: str, timeout: float = 0.0) -> Environment | None:
        """An execution environment for one event, waiting up to ``timeout`` seconds for free concurrency;
        None if there is none (the caller throttles, or a poller receives nothing)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._free(function):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            self._busy[function] += 1
            stats = self.stats[function]
            if not stats.reserved:
                self._unreserved_busy += 1
            stats.peak = max(stats.peak, self._busy[function])
            stats.recent_peak = max(stats.recent_peak, self._busy[function])
            if self._idle[function]:
                return self._idle[function].pop()  # the warmest
            index = self._created[function]
            self._created[function] += 1
            stats.environments += 1
            return Environment(function, index)

    def release(self, environment: Environment, *, reusable: bool = True) -> None:
        """The event is done (``reusable``), or its environment is discarded (it timed out)."""
        function = environment.function
        with self._condition:
            self._busy[function] -= 1
            if not self.stats[function].reserved:
                self._unreserved_busy -= 1
            if reusable:
                self._idle[function].append(environment)
            self._condition.notify_all()

    def set_limit(self, function: str, limit: int) -> int:
        """Change a function's concurrency while running (a test's own limit); returns the one it had."""
        with self._condition:
            stats = self.stats[function]
            previous, stats.limit = stats.limit, limit
            self._condition.notify_all()
            return previous

    def set_timeout(self, function: str, seconds: float) -> float:
        """Change a function's timeout for the invocations that start from now; returns the one it had."""
        with self._condition:
            stats = self.stats[function]
            previous, stats.timeout_seconds = stats.timeout_seconds, seconds
            return previous

    def reset_peaks(self) -> None:
        """Start counting the most events at once afresh (``recent_peak``, from what runs now)."""
        with self._condition:
            for name, stats in self.stats.items():
                stats.recent_peak = self._busy[name]

    def count(self, function: str, **increments: float) -> None:
        with self._condition:
            stats = self.stats[function]
            for name, value in increments.items():
                setattr(stats, name, getattr(stats, name) + value)

    def count_queue(self, queue: str, *, receive_count: int = 0, **increments: int) -> None:
        with self._condition:
            stats = self.queues.setdefault(queue, QueueStats())
            for name, value in increments.items():
                setattr(stats, name, getattr(stats, name) + value)
            stats.highest_receive_count = max(stats.highest_receive_count, receive_count)

    def busy(self, function: str) -> int:
        with self._condition:
            return self._busy[function]


def run_with_timeout(
    run: Callable[[], Any], seconds: float, name: str
) -> tuple[bool, Any, BaseException | None]:
    """Run ``run`` in a thread of its own for up to ``seconds``: (finished, result, exception). A run past
    its time is left running in the background (Python cannot stop a thread); what it returns is dropped."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    if not done.wait(seconds):
        return False, None, None
    return True, outcome.get("result"), outcome.get("error")


# -- Step Functions' history limit -----------------------------------------------------------------------
_TERMINAL_EVENTS = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
)


class HistoryLimit:
    """Step Functions' hard quota of 25,000 history events, on moto's engine (which has none): when an
    execution's history holds ``limit - 1`` events, the next one is recorded only if it ends the execution
    successfully; otherwise the execution fails with ``States.Runtime`` (AWS: "the ExecutionFailed event is
    logged and the state machine execution fails because of reaching the history limit"), and the events
    its running states still produce are dropped. Installed on moto's classes for the process."""

    def __init__(self, limit: int, on_exceeded: Callable[[str], None] | None = None) -> None:
        self.limit = limit
        self.on_exceeded = on_exceeded
        self.exceeded: list[str] = []  # execution ARNs failed at the limit
        self._originals: dict[str, Any] = {}

    def install(self) -> HistoryLimit:
        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        if self._originals:
            return self
        limit = self
        publish = EventManager._publish_history_event
        environment_of = ExecutionWorker._get_evaluation_environment

        def _get_evaluation_environment(worker: Any) -> Any:
            env = environment_of(worker)
            # The execution's own environment, to fail it.
            env.event_manager.data_export_root = env  # type: ignore[attr-defined]
            return env

        def _publish_history_event(manager: Any, **event: Any) -> None:  # called under manager._mutex
            recorded = len(manager._history_event_list)
            # The last event the history has room for may only end the execution (ExecutionSucceeded, or
            # the ExecutionFailed this very limit causes); any other event fails the execution instead.
            kind = getattr(event["event_type"], "value", event["event_type"])
            last_room = recorded == limit.limit - 1 and kind in _TERMINAL_EVENTS
            if recorded >= limit.limit - 1 and not last_room:
                manager._event_id_gen._next_id -= 1  # not recorded: the ids stay those of the history
                limit._exceeded(manager)
                return
            publish(manager, **event)

        ExecutionWorker._get_evaluation_environment = _get_evaluation_environment  # type: ignore[assignment]
        EventManager._publish_history_event = _publish_history_event  # type: ignore[assignment]
        self._originals = {"environment": environment_of, "publish": publish}
        return self

    def uninstall(self) -> None:
        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        if self._originals:
            ExecutionWorker._get_evaluation_environment = self._originals["environment"]  # type: ignore[method-assign]
            EventManager._publish_history_event = self._originals["publish"]  # type: ignore[method-assign]
            self._originals = {}

    def _exceeded(self, manager: Any) -> None:
        root = getattr(manager, "data_export_root", None)
        if root is None or getattr(manager, "data_export_failed", False):
            return
        manager.data_export_failed = True
        arn = str(root.states.context_object.context_object_data["Execution"]["Id"])
        self.exceeded.append(arn)
        if self.on_exceeded is not None:
            self.on_exceeded(arn)
        from moto.stepfunctions.parser.api import ExecutionFailedEventDetails

        details = ExecutionFailedEventDetails(
            error=HISTORY_ERROR,
            cause=f"The execution reached the maximum number of history events ({self.limit}).",
        )

        def fail() -> None:
            with root._state_mutex:
                root.set_error(details)
                # Final: the states still running fail too, and would set their own error in its place.
                root.set_error = lambda error: None

        # Not under the event manager's lock (held here): the states take the environment's lock first.
        threading.Thread(target=fail, name="history-limit", daemon=True).start()
