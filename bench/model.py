"""Client-side latency and rate-limit model: simulated wall time from botocore events, never slept.

Every API call (botocore `before-call`, once per call; retries do not happen against the emulator)
advances the calling thread's *virtual* clock:

    grant = bucket.take(now)          # the shared token bucket of the operation, if any
    now   = grant + latency           # the call's round trip (default 50 ms)

Buckets are GCRA token buckets (burst b, rate r): the k-th grant is no earlier than
(k - b) / r after the first, and a call with a token available goes at once. They are shared by
every thread, so concurrent callers queue on them in the order their requests arrive.

Concurrency is accounted per thread: `install_executor_accounting()` wraps
`ThreadPoolExecutor.submit`/`shutdown`. A pool of N workers is N virtual workers, each free from
some virtual time on; a task goes to the virtual worker free first (whichever real thread runs it)
and starts at max(that time, the submitter's clock at submit); the submitter's clock, when it joins
the pool (the `with` block's shutdown), becomes the latest task end. So N calls overlap and the
bucket serializes them. Approximation: requests reach a bucket in real arrival order, not strictly
in virtual-time order; with symmetric workers the two differ by less than one call's latency.
`sleep(s)` advances the caller's clock by s (the baseline's fixed waits) without sleeping.

`rate_bound()` is the lower bound the buckets alone impose on a set of calls: max over buckets of
(calls - burst) / rate, plus one latency for the last call to come back.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LATENCY = 0.050


@dataclass(frozen=True)
class BucketSpec:
    """A token bucket shared by some operations (`service:Operation`)."""

    name: str
    operations: frozenset[str]
    burst: float
    rate: float  # tokens per second
    source: str = ""

    def describe(self) -> str:
        """One line for the results."""
        ops = ", ".join(sorted(self.operations))
        source = f" - {self.source}" if self.source else ""
        return f"{self.name}: burst {self.burst:g}, {self.rate:g}/s ({ops}){source}"


ECS_DOC = "ECS API reference, request throttling"
DEFAULT_BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec(
        "ecs-task-definition-read",
        frozenset(
            {"ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions", "ecs:ListTaskDefinitionFamilies"}
        ),
        50,
        20,
        ECS_DOC,
    ),
    BucketSpec("ecs-cluster-read", frozenset({"ecs:DescribeClusters", "ecs:ListClusters"}), 50, 20, ECS_DOC),
    BucketSpec("ecs-service-read", frozenset({"ecs:DescribeServices", "ecs:ListServices"}), 100, 20, ECS_DOC),
    BucketSpec("s3-put", frozenset({"s3:PutObject"}), 3500, 3500, "S3: 3,500 PUT/s per prefix"),
    BucketSpec("s3-get", frozenset({"s3:GetObject"}), 5500, 5500, "S3: 5,500 GET/s per prefix"),
)


def parse_bucket(text: str) -> BucketSpec:
    """`name=svc:Op1,svc:Op2@burst/rate`, e.g. `ecr-read=ecr:DescribeImages@100/50`."""
    name, _, rest = text.partition("=")
    ops, _, limits = rest.rpartition("@")
    burst, _, rate = limits.partition("/")
    if not (name and ops and burst and rate):
        raise ValueError(f"bucket {text!r}: expected name=svc:Op[,svc:Op...]@burst/rate")
    return BucketSpec(
        name, frozenset(o.strip() for o in ops.split(",")), float(burst), float(rate), "configured"
    )


class Bucket:
    """A GCRA token bucket over virtual time; thread-safe."""

    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self._interval = 1.0 / spec.rate
        self._tolerance = (spec.burst - 1) * self._interval
        self._tat = float("-inf")  # theoretical arrival time of the next conforming request
        self._lock = threading.Lock()
        self.grants = 0
        self.waited = 0.0

    def take(self, now: float) -> float:
        """The virtual time at which a request made at `now` gets its token."""
        with self._lock:
            tat = now if self._tat == float("-inf") else self._tat
            grant = max(now, tat - self._tolerance)
            self._tat = max(tat, grant) + self._interval
            self.grants += 1
            self.waited += grant - now
            return grant


@dataclass
class OpStats:
    """Per-operation totals."""

    calls: int = 0
    waited: float = 0.0


@dataclass
class Model:
    """Latency + buckets over per-thread virtual clocks."""

    latency: float = DEFAULT_LATENCY
    buckets: tuple[BucketSpec, ...] = DEFAULT_BUCKETS
    latency_by_op: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._by_op: dict[str, Bucket] = {}
        self.live_buckets = [Bucket(b) for b in self.buckets]
        for bucket in self.live_buckets:
            for op in bucket.spec.operations:
                self._by_op[op] = bucket
        self.ops: dict[str, OpStats] = defaultdict(OpStats)
        # How far each service (or sleep) moved the clock of the thread that runs the pipeline.
        self.critical: defaultdict[str, float] = defaultdict(float)
        self._main = threading.get_ident()
        self._pool_services: dict[int, Counter[str]] = {}

    # --- clocks ---

    def now(self) -> float:
        """This thread's virtual time."""
        value: float = getattr(self._local, "t", 0.0)
        return value

    def _set(self, t: float) -> None:
        self._local.t = t

    def _advance(self, label: str, to: float) -> None:
        before = self.now()
        self._set(to)
        if threading.get_ident() == self._main and to > before:
            with self._lock:
                self.critical[label] += to - before

    def sleep(self, seconds: float, label: str = "sleep") -> None:
        """A fixed wait, in simulated time only."""
        self._advance(label, self.now() + seconds)

    # --- the hook ---

    def attach(self, client: Any) -> None:
        """Account every API call of this client (registered first, before any emulator answers)."""
        client.meta.events.register_first("before-call.*.*", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        op = f"{model.service_model.service_name}:{model.name}"
        self.call(op)

    def call(self, op: str) -> None:
        """Account one call of `op` made now by this thread."""
        start = self.now()
        bucket = self._by_op.get(op)
        grant = bucket.take(start) if bucket else start
        with self._lock:
            stats = self.ops[op]
            stats.calls += 1
            stats.waited += grant - start
            pool = getattr(self._local, "pool", None)
            if pool is not None:
                self._pool_services.setdefault(pool, Counter())[op.split(":", 1)[0]] += 1
        self._advance(op.split(":", 1)[0], grant + self.latency_by_op.get(op, self.latency))

    # --- results ---

    def calls(self) -> dict[str, int]:
        """Calls by `service:Operation`."""
        with self._lock:
            return {op: s.calls for op, s in sorted(self.ops.items())}

    def waited(self) -> dict[str, float]:
        """Seconds spent waiting for tokens, by operation (summed over threads)."""
        with self._lock:
            return {op: round(s.waited, 3) for op, s in sorted(self.ops.items()) if s.waited}

    # --- executor accounting ---

    def _pool_join(self, pool_id: int, ends: Iterable[float]) -> None:
        latest = max(ends, default=self.now())
        if latest > self.now():
            services = self._pool_services.get(pool_id, Counter())
            label = f"{services.most_common(1)[0][0]} (concurrent)" if services else "pool"
            self._advance(label, latest)


_INSTALLED: list[Model] = []


def install_executor_accounting(model: Model) -> Callable[[], None]:
    """Patch ThreadPoolExecutor so pool tasks run on the submitter's virtual timeline; returns an undo."""
    orig_submit = ThreadPoolExecutor.submit
    orig_shutdown = ThreadPoolExecutor.shutdown

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        parent = model.now()
        pool_id = id(self)
        with model._lock:
            state = self.__dict__.get("_bench")
            if state is None:
                # One virtual worker per real one: the times at which each becomes free.
                workers = [float("-inf")] * self._max_workers
                state = self.__dict__["_bench"] = {"free": workers, "ends": []}
        free: list[float] = state["free"]
        ends: list[float] = state["ends"]

        def task() -> Any:
            # The task goes to the virtual worker that is free first (not to whichever real thread
            # picked it up), and starts no earlier than its submission.
            with model._lock:
                slot = heapq.heappop(free)
            model._set(max(parent, slot))
            model._local.pool = pool_id
            try:
                return fn(*args, **kwargs)
            finally:
                model._local.pool = None
                end = model.now()
                with model._lock:
                    heapq.heappush(free, end)
                    ends.append(end)

        return orig_submit(self, task)

    def shutdown(self: ThreadPoolExecutor, wait: bool = True, *, cancel_futures: bool = False) -> None:
        orig_shutdown(self, wait=wait, cancel_futures=cancel_futures)
        if wait:
            model._pool_join(id(self), self.__dict__.get("_bench", {}).get("ends", []))

    # Patched on purpose (the bench's virtual clock); ours take the pool's own class, not Executor.
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]
    ThreadPoolExecutor.shutdown = shutdown  # type: ignore[method-assign, assignment]
    _INSTALLED.append(model)

    def undo() -> None:
        ThreadPoolExecutor.submit = orig_submit  # type: ignore[method-assign]
        ThreadPoolExecutor.shutdown = orig_shutdown  # type: ignore[method-assign]
        _INSTALLED.remove(model)

    return undo


def rate_bound(
    calls: Mapping[str, int], buckets: Iterable[BucketSpec], latency: float = DEFAULT_LATENCY
) -> tuple[float, str]:
    """(seconds, the binding bucket): what the rate limits alone impose on `calls`."""
    worst, name = 0.0, "none"
    for b in buckets:
        n = sum(calls.get(op, 0) for op in b.operations)
        t = max(0.0, (n - b.burst) / b.rate)
        if t > worst:
            worst, name = t, b.name
    return (worst + latency if calls else 0.0), name
