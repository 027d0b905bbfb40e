"""The small JQL subset the operator sends, parsed and evaluated for the Jira test server.

Grammar (case-insensitive keywords):
    query   := [or_expr] [ORDER BY field [ASC|DESC] {, field [ASC|DESC]}]
    or_expr := and_expr {OR and_expr}
    and_expr:= not_expr {AND not_expr}
    not_expr:= NOT not_expr | '(' or_expr ')' | clause
    clause  := field ('=' | '!=') value | field [NOT] IN '(' value {, value} ')'
Fields: labels, project, status, statusCategory, resolution, key, issuetype. Anything else is a
syntax error (HTTP 400), as an unknown field is on a real Jira.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FIELDS = {"labels", "project", "status", "statuscategory", "resolution", "key", "issuetype", "created"}
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s"=!(),]+))')


class JqlError(ValueError):
    """The query is not valid (Jira answers 400)."""


@dataclass(frozen=True)
class Query:
    """A parsed query: a predicate over an issue's field values, and the sort order."""

    predicate: Callable[[Mapping[str, Any]], bool] | None
    order: tuple[tuple[str, bool], ...]  # (field, descending)

    @property
    def bounded(self) -> bool:
        """Jira Cloud's /search/jql refuses queries without a restriction."""
        return self.predicate is not None


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise JqlError(f"cannot read the query at character {pos}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            out.append(("val", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, n: int = 0) -> tuple[str, str] | None:
        j = self.i + n
        return self.toks[j] if j < len(self.toks) else None

    def kw(self, word: str, n: int = 0) -> bool:
        t = self.peek(n)
        return t is not None and t[0] == "word" and t[1].lower() == word

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise JqlError("the query ends too early")
        self.i += 1
        return t

    def expect_op(self, op: str) -> None:
        t = self.take()
        if t != ("op", op):
            raise JqlError(f"expected {op!r}, got {t[1]!r}")

    def parse(self) -> Query:
        pred = None
        if self.peek() is not None and not (self.kw("order") and self.kw("by", 1)):
            pred = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.kw("order"):
            self.take()
            if not self.kw("by"):
                raise JqlError("expected BY after ORDER")
            self.take()
            while True:
                field = self.take()[1].lower()
                desc = False
                if self.kw("asc") or self.kw("desc"):
                    desc = self.take()[1].lower() == "desc"
                order.append((field, desc))
                if self.peek() == ("op", ","):
                    self.take()
                    continue
                break
        if self.peek() is not None:
            raise JqlError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return Query(pred, tuple(order))

    def or_expr(self) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.and_expr()]
        while self.kw("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda issue: any(p(issue) for p in parts))

    def and_expr(self) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.not_expr()]
        while self.kw("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda issue: all(p(issue) for p in parts))

    def not_expr(self) -> Callable[[Mapping[str, Any]], bool]:
        if self.kw("not"):
            self.take()
            inner = self.not_expr()
            return lambda issue: not inner(issue)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            self.expect_op(")")
            return inner
        return self.clause()

    def value(self) -> str:
        kind, text = self.take()
        if kind == "op":
            raise JqlError(f"expected a value, got {text!r}")
        return text

    def clause(self) -> Callable[[Mapping[str, Any]], bool]:
        kind, field = self.take()
        if kind != "word" or field.lower() not in FIELDS:
            raise JqlError(f"Field '{field}' does not exist or you do not have permission to view it.")
        name = field.lower()
        if self.peek() in (("op", "="), ("op", "!=")):
            negate = self.take()[1] == "!="
            values = [self.value()]
        else:
            negate = False
            if self.kw("not"):
                self.take()
                negate = True
            if not self.kw("in"):
                raise JqlError(f"expected an operator after {field!r}")
            self.take()
            self.expect_op("(")
            values = [self.value()]
            while self.peek() == ("op", ","):
                self.take()
                values.append(self.value())
            self.expect_op(")")
        wanted = {v.lower() for v in values}

        def test(issue: Mapping[str, Any]) -> bool:
            have = {str(v).lower() for v in issue.get(name, ())}
            if negate:
                # Like Jira, a NOT/!= clause never matches an empty field.
                return bool(have) and not (have & wanted)
            return bool(have & wanted)

        return test


def parse(text: str) -> Query:
    """Parse a query; raise JqlError for anything outside the subset."""
    return _Parser(text).parse()
