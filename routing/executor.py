"""The executor: try a plan's candidates in order, failing over on retryable errors, recording every attempt.

No database transaction is open while a provider is called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from providers.adapters import adapter_for_credential
from providers.breaker import breaker
from providers.crypto import DecryptionError
from providers.errors import ErrorKind, ProviderError
from providers.health import attempt_record
from providers.models import AttemptLog
from providers.types import ChatRequest, ChatResult
from routing.planner import Candidate, Plan

log = logging.getLogger(__name__)

RequestFactory = Callable[[Candidate], ChatRequest]


@dataclass
class Attempt:
    candidate: str
    model_id: int
    credential_id: int
    outcome: str  # "ok", an ErrorKind value, or "skipped" (breaker open / cooling down)
    latency_ms: int
    error: str = ""
    status: int | None = None
    retry_in: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Execution:
    candidate: Candidate
    result: ChatResult
    attempts: list[Attempt] = field(default_factory=list)
    # The successful attempt's AttemptLog row, unsaved: the caller writes it with what it stores (the chat engine with
    # the reply, conversations.writes; others with providers.health.attempt_logs_write). Failed attempts are written
    # as they happen.
    success_log: AttemptLog | None = None


STOPS_THE_PLAN = (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTERED)  # another provider would refuse it too
REQUEST_REJECTED = (*STOPS_THE_PLAN, ErrorKind.CONTEXT_TOO_LONG)  # a prompt too long moves to larger windows first


class AllCandidatesFailed(Exception):
    def __init__(self, attempts: list[Attempt], last_error: ProviderError | None):
        self.attempts = attempts
        self.last_error = last_error
        summary = "; ".join(f"{a.candidate}: {a.outcome}" for a in attempts) or "no candidate was tried"
        super().__init__(f"every candidate failed ({summary})")

    @property
    def http_status(self) -> int:
        # 503 when providers are unavailable (retry later helps); 502 when they answered with errors.
        unavailable = {ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, "skipped"}
        return 503 if self.attempts and all(a.outcome in unavailable for a in self.attempts) else 502

    @property
    def rejection(self) -> ProviderError | None:
        """The provider's error if it refused the request itself (malformed, too long, filtered) and that ended the
        chain: the client has to change the request, a retry of the same one will not help."""
        error = self.last_error
        if error is not None and error.kind in REQUEST_REJECTED and self.attempts and self.attempts[-1].outcome == error.kind.value:
            return error
        return None

    @property
    def keys_rejected(self) -> bool:
        """Every provider called refused the key itself (401/403): those keys are now disabled, so a retry cannot
        help until staff (or the client, for its own keys) set working ones."""
        called = [a for a in self.attempts if a.outcome != "skipped"]
        return bool(called) and all(a.outcome in (ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION) for a in called)

    @property
    def retry_after(self) -> int:
        """Seconds until a provider is expected back (the shortest cool-down seen), at least 1."""
        waits = [a.retry_in for a in self.attempts if a.retry_in]
        if self.last_error is not None and self.last_error.retry_after:
            waits.append(self.last_error.retry_after)
        return max(1, int(min(waits) + 0.999)) if waits else 5


class StreamInterrupted(Exception):
    """The provider failed after text had already reached the client: the stream cannot silently fail over."""

    def __init__(self, error: ProviderError, attempts: list[Attempt], text: str):
        self.error = error
        self.attempts = attempts
        self.text = text
        super().__init__(str(error))


def _stop_after(error: ProviderError) -> bool:
    """Permanent errors about the request itself end the plan; others move to the next candidate."""
    return error.kind in STOPS_THE_PLAN


class _Chain:
    """Walks a plan's candidates: skips open circuits and cool-downs without calling them, and after a
    'context too long' only goes on to models with a larger window."""

    def __init__(self, plan: Plan, tenant_id: int | None, probe: bool = False):
        self.plan = plan
        self.tenant_id = tenant_id
        self.probe = probe  # a drill's calls: health checks, not client traffic (dashboard, metrics, key last used)
        self.attempts: list[Attempt] = []
        self.success_log: AttemptLog | None = None
        self.min_window = 0
        self.last_error: ProviderError | None = None  # of the last candidate that failed

    def __iter__(self) -> Iterator[Candidate]:
        cb = breaker()
        for candidate in self.plan.candidates:
            if candidate.model.context_window <= self.min_window:
                continue
            admission = cb.allow(candidate.credential.pk, candidate.model.pk)
            if not admission.allowed:
                self.attempts.append(Attempt(
                    candidate=candidate.label, model_id=candidate.model.pk, credential_id=candidate.credential.pk,
                    outcome="skipped", latency_ms=0, error=admission.reason, retry_in=admission.retry_in,
                ))
                continue
            yield candidate

    def failed(self, candidate: Candidate, error: ProviderError, started: float) -> None:
        self.last_error = error
        latency = int((time.perf_counter() - started) * 1000)
        attempt_record(credential=candidate.credential, model=candidate.model, outcome=error.kind.value, latency_ms=latency,
                       error=error, tenant_id=self.tenant_id, probe=self.probe)
        log.info("attempt failed: %s %s %s", candidate.label, error.kind.value, error.status)
        if error.kind == ErrorKind.CONTEXT_TOO_LONG:
            self.min_window = max(self.min_window, candidate.model.context_window)
        self.attempts.append(Attempt(
            candidate=candidate.label, model_id=candidate.model.pk, credential_id=candidate.credential.pk,
            outcome=error.kind.value, latency_ms=latency, error=error.message[:500], status=error.status,
            retry_in=error.retry_after,
        ))

    def adapter(self, candidate: Candidate, started: float):
        """The candidate's adapter, or None (recorded) if this process cannot read its key or build its client."""
        try:
            return adapter_for_credential(candidate.credential)
        except DecryptionError as exc:  # this process's FIELD_ENCRYPTION_KEYS: never counted against the key
            self.unreadable(candidate, exc)
        except ProviderError as error:
            self.failed(candidate, error, started)
        return None

    def unreadable(self, candidate: Candidate, exc: Exception) -> None:
        """This process cannot decrypt the key: skip it, loudly, without touching the credential or its circuit."""
        log.error("credential %s cannot be decrypted here (check FIELD_ENCRYPTION_KEYS): %s", candidate.credential.pk, exc)
        self.attempts.append(Attempt(
            candidate=candidate.label, model_id=candidate.model.pk, credential_id=candidate.credential.pk,
            outcome="skipped", latency_ms=0, error="key cannot be decrypted by this process (FIELD_ENCRYPTION_KEYS)",
        ))

    def succeeded(self, candidate: Candidate, started: float) -> None:
        latency = int((time.perf_counter() - started) * 1000)
        self.success_log = attempt_record(credential=candidate.credential, model=candidate.model, outcome="ok",
                                          latency_ms=latency, error=None, tenant_id=self.tenant_id, probe=self.probe, save=False)
        self.attempts.append(Attempt(
            candidate=candidate.label, model_id=candidate.model.pk, credential_id=candidate.credential.pk,
            outcome="ok", latency_ms=latency,
        ))


def execute(plan: Plan, build_request: RequestFactory, *, tenant_id: int | None = None, probe: bool = False) -> Execution:
    chain = _Chain(plan, tenant_id, probe)
    for candidate in chain:
        started = time.perf_counter()
        adapter = chain.adapter(candidate, started)
        if adapter is None:
            continue
        try:
            result = adapter.complete(build_request(candidate))
        except ProviderError as error:
            chain.failed(candidate, error, started)
            if _stop_after(error):
                break
            continue
        chain.succeeded(candidate, started)
        return Execution(candidate=candidate, result=result, attempts=chain.attempts, success_log=chain.success_log)
    raise AllCandidatesFailed(chain.attempts, chain.last_error)


@dataclass
class StreamOutcome:
    """Filled in as the stream runs; read it after the iterator is exhausted."""

    execution: Execution | None = None
    attempts: list[Attempt] = field(default_factory=list)
    current: Candidate | None = None  # the candidate whose deltas are flowing


def execute_stream(
    plan: Plan, build_request: RequestFactory, outcome: StreamOutcome, *, tenant_id: int | None = None,
) -> Iterator[str]:
    """Yield text deltas. Fails over silently until the first delta; after it, raises StreamInterrupted
    (never a second provider's text after the first's: that would duplicate what the client has)."""
    chain = _Chain(plan, tenant_id)
    outcome.attempts = chain.attempts
    for candidate in chain:
        started = time.perf_counter()
        sent: list[str] = []
        outcome.current = candidate
        adapter = chain.adapter(candidate, started)
        if adapter is None:
            continue
        try:
            for event in adapter.stream(build_request(candidate)):
                if event.type == "delta":
                    sent.append(event.text)
                    yield event.text
                elif event.type == "done" and event.result is not None:
                    chain.succeeded(candidate, started)
                    outcome.execution = Execution(candidate=candidate, result=event.result, attempts=chain.attempts,
                                                  success_log=chain.success_log)
                    return
            raise ProviderError(ErrorKind.CONNECTION, "the stream ended without a final result")
        except ProviderError as error:
            chain.failed(candidate, error, started)
            if sent:
                raise StreamInterrupted(error, chain.attempts, "".join(sent)) from error
            if _stop_after(error):
                break
    raise AllCandidatesFailed(chain.attempts, chain.last_error)


