"""Bounded concurrency for independent I/O calls (botocore clients are thread-safe)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WORKERS = 8  # below the ECS/ECR sustained rates, within the clients' 16 pooled connections


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int = DEFAULT_WORKERS) -> list[R]:
    """fn over items, `workers` at a time, results in input order; one item needs no thread."""
    todo = list(items)
    if len(todo) <= 1 or workers <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="aws") as pool:
        return list(pool.map(fn, todo))
