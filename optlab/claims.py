r"""Claim verdicts: how every chapter asserts its paper's claim and reports it in one format.

A chapter's claim cell measures a few numbers, states the thresholds the paper's
claim implies, and ends with one call of :func:`claim`::

    claim("P10", "the last iterate converges at the rate T^(-1/2) ...",
          [within("slope of the mean gap", slopes, -0.6, -0.4),
           at_least("share of exact zeros of the last iterate", zeros, 0.5)],
          seeds=SEEDS, sizes={"N_REPLICAS": N_REPLICAS},
          rejects=["the running average instead of the last iterate"])

:func:`claim` asserts every check (a failing one raises :class:`ClaimFailed`, an
``AssertionError``, with the whole verdict in its message), prints the verdict in
the book's one format, wrapped to fit the page, and attaches it as machine-readable
JSON (MIME type ``application/vnd.optlab.claim+json``) so that the book's claims
page can collect it from the stored outputs.

The status says how much of the paper's claim the asserted checks cover:

* ``"holds"``: the claim, at this scale;
* ``"holds in part"``: ``note`` says what does not hold or was not checked;
* ``"does not reproduce at this scale"``: an honest negative result; the checks
  assert what *does* hold, ``note`` gives the reason.

``rejects`` names the wrong variants of the method on which the chapter's tests
show this same check failing (a claim with teeth).

Examples
--------
>>> v = claim("P00", "two plus two is four", [within("2 + 2", 4.0, 3.9, 4.1)], seeds=[0], sizes={},
...           display=False)
>>> v.status, v.checks[0].passed
('holds', True)

Book: chapters/appendix/claims.md

References
----------
The practice of checking a paper's claim across seeds with stated margins follows
J. Pineau et al., Improving reproducibility in machine learning research, JMLR 22, 2021.
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from .validate import check_choice, check_real, describe

__all__ = ["Check", "Verdict", "ClaimFailed", "claim", "within", "at_least", "at_most", "is_true", "MIME",
           "STATUSES", "WIDTH"]

MIME = "application/vnd.optlab.claim+json"
STATUSES = ("holds", "holds in part", "does not reproduce at this scale")
WIDTH = 88  # characters per printed line: fits the book's page without scrolling


class ClaimFailed(AssertionError):
    """A check of a chapter's claim failed; the message is the verdict with the failing checks marked."""


def _num(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class Check:
    r"""One asserted quantity: its measured value(s) and the interval the claim allows.

    ``value`` may be one number or an array (one value per seed, per horizon...): the
    check passes when *every* value lies in ``[low, high]`` (either end may be None).
    """

    name: str
    value: tuple
    low: Optional[float] = None
    high: Optional[float] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {describe(self.name)}")
        try:
            values = np.asarray(self.value, dtype=float).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"value of check {self.name!r} must be numbers, got {describe(self.value)}") from None
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"value of check {self.name!r} must be finite numbers, got {values.tolist()}")
        if self.low is None and self.high is None:
            raise ValueError(f"check {self.name!r} needs low, high or both")
        for bound in ("low", "high"):
            if getattr(self, bound) is not None:
                object.__setattr__(self, bound, check_real(getattr(self, bound), bound))
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"check {self.name!r}: low={self.low} > high={self.high}")
        object.__setattr__(self, "value", tuple(values.tolist()))

    @property
    def passed(self) -> bool:
        v = np.asarray(self.value)
        return bool(np.all((self.low is None or v >= self.low) & (self.high is None or v <= self.high)))

    @property
    def margin(self) -> float:
        """The smallest distance from a value to a violated or nearest bound (negative when it fails)."""
        v = np.asarray(self.value)
        gaps = [v - self.low] if self.low is not None else []
        gaps += [self.high - v] if self.high is not None else []
        return float(np.min(np.concatenate(gaps)))

    def measured(self) -> str:
        v = np.asarray(self.value)
        return _num(v[0]) if v.size == 1 else f"{_num(v.min())} to {_num(v.max())} ({v.size} values)"

    def bound(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in [{_num(self.low)}, {_num(self.high)}]"
        return f">= {_num(self.low)}" if self.low is not None else f"<= {_num(self.high)}"

    def line(self) -> str:
        return f"[{'ok' if self.passed else 'FAIL'}] {self.name}: {self.measured()}, required {self.bound()}"


def within(name: str, value, low: float, high: float) -> Check:
    """A check that every value lies in ``[low, high]``."""
    return Check(name, value, low, high)


def at_least(name: str, value, low: float) -> Check:
    """A check that every value is ``>= low``."""
    return Check(name, value, low=low)


def at_most(name: str, value, high: float) -> Check:
    """A check that every value is ``<= high``."""
    return Check(name, value, high=high)


def is_true(name: str, condition) -> Check:
    """A check that a condition (or every condition of an array) holds: 1 means true."""
    return Check(name, np.asarray(condition, dtype=bool).astype(float), low=1.0)


@dataclass(frozen=True)
class Verdict:
    """A chapter's claim, its checks, seeds, sizes, status and the wrong variants it rejects."""

    paper: str
    statement: str
    checks: tuple
    seeds: tuple
    sizes: dict
    status: str
    note: str = ""
    rejects: tuple = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def text(self, width: int = WIDTH) -> str:
        """The verdict as printed in the book, every line at most ``width`` characters."""
        head = f"CLAIM {self.paper} {self.status.upper() if self.passed else 'FAILED'}: {self.statement}"
        lines = textwrap.wrap(head, width, subsequent_indent="  ")
        if self.note:
            lines += textwrap.wrap(f"Note: {self.note}", width, initial_indent="  ", subsequent_indent="    ")
        for c in self.checks:
            lines += textwrap.wrap(c.line(), width, initial_indent="  ", subsequent_indent="      ")
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        runs = f"seeds {', '.join(map(str, self.seeds))}" + (f"; {sizes}" if sizes else "")
        lines += textwrap.wrap(runs, width, initial_indent="  ", subsequent_indent="    ")
        if self.rejects:
            lines += textwrap.wrap("fails, as tested, on: " + "; ".join(self.rejects), width,
                                   initial_indent="  ", subsequent_indent="    ")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["checks"] = [dict(asdict(c), passed=c.passed, margin=c.margin) for c in self.checks]
        d["passed"] = self.passed
        return d


#: The last verdict made in this process (read by tools/claims.py when it re-runs a claim cell).
LAST: list = []


def _plain(value):
    """Sizes as JSON-friendly plain values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def claim(paper: str, statement: str, checks, *, seeds, sizes: dict, status: str = "holds", note: str = "",
          rejects=(), display: bool = True) -> Verdict:
    r"""Assert a chapter's claim, print its verdict in the book's format, and return it.

    Parameters
    ----------
    paper : str
        The paper's id in the book (``"P10"``).
    statement : str
        The claim in words, as the chapter checks it (scale and setting included).
    checks : sequence of Check
        What is asserted (:func:`within`, :func:`at_least`, :func:`at_most`, :func:`is_true`).
    seeds : sequence of int
        The seeds the checks ran on.
    sizes : dict
        The sizes (replicas, dimensions, budgets) as plain values.
    status : str
        ``"holds"``, ``"holds in part"`` or ``"does not reproduce at this scale"``.
    note : str
        Required unless the status is ``"holds"``: what does not hold, and why.
    rejects : sequence of str
        The wrong variants on which the chapter's tests show this check failing.
    display : bool
        Show the verdict (text and JSON) in a notebook, or print it elsewhere.

    Returns
    -------
    Verdict

    Raises
    ------
    ClaimFailed
        When any check fails (the message is the verdict, failing checks marked FAIL).
    """
    check_choice(status, "status", STATUSES)
    if status != "holds" and not (isinstance(note, str) and note.strip()):
        raise ValueError(f"note must say what does not hold when status is {status!r}")
    checks = tuple(checks)
    if not checks or not all(isinstance(c, Check) for c in checks):
        raise TypeError("checks must be a non-empty sequence of Check (within, at_least, at_most, is_true)")
    if not isinstance(sizes, dict):
        raise TypeError(f"sizes must be a dict of the sizes used, got {describe(sizes)}")
    seeds = tuple(int(s) for s in np.atleast_1d(np.asarray(seeds, dtype=object)))
    verdict = Verdict(str(paper), " ".join(str(statement).split()), checks, seeds,
                      {k: _plain(v) for k, v in sizes.items()}, status, " ".join(note.split()),
                      tuple(str(r) for r in rejects))
    LAST.append(verdict)
    if not verdict.passed:
        raise ClaimFailed(verdict.text())
    if display:
        _show(verdict)
    return verdict


def _show(verdict: Verdict) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is there wherever a notebook runs
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        payload = json.loads(json.dumps(verdict.to_dict()))
        display({"text/plain": verdict.text(), MIME: payload}, raw=True)
    else:
        print(verdict.text())
