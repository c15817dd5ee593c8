"""Which of several ways of doing the same work is fastest here: timed in alternating rounds.

Used for inference (``--backend auto``: backends, precisions, memory layouts) and for training
(``precision: auto``, ``layout: auto``). Alternation matters on a shared machine: a load that comes and
goes slows the candidates of a round alike.
"""

import math
import time
from collections.abc import Callable, Hashable

ROUND_SECONDS = 0.25
"""A candidate's round repeats its call until it lasts about this long (judged by its untimed call):
single calls of a few tens of milliseconds are at the mercy of one scheduling hiccup on a busy machine."""
OUT_OF_RACE = 1.5
"""After the first round, candidates this many times slower than the fastest are timed no more."""


def race(
    candidates: dict[Hashable, Callable[[], object]], rounds: int, failures: tuple[type[Exception], ...] = ()
) -> dict[Hashable, list[float]]:
    """Seconds per call of each candidate in each round; finalists have ``rounds`` figures.

    Each candidate is first called once, untimed in the race (kernel selection, allocations, a graph's
    compilation). Only after the first round can a candidate drop out, so that one slow round later on
    never rules out the fastest. A candidate whose untimed call raises one of ``failures`` (it cannot
    run here) is left out of the result; if none can run, the last failure is raised.
    """
    seconds, calls, failure = {}, {}, None
    for key, call in candidates.items():
        try:
            started = time.perf_counter()
            call()
        except failures as exc:
            failure = exc
            continue
        seconds[key] = []
        calls[key] = max(1, math.ceil(ROUND_SECONDS / max(time.perf_counter() - started, 1e-6)))
    if not seconds:
        raise failure or ValueError("race: no candidates")
    racing = list(seconds)
    for round_ in range(1, rounds + 1):
        for key in racing:
            call = candidates[key]
            started = time.perf_counter()
            for _ in range(calls[key]):
                call()
            seconds[key].append((time.perf_counter() - started) / calls[key])
        if round_ == 1:
            best = min(seconds[key][-1] for key in racing)
            racing = [key for key in racing if seconds[key][-1] <= OUT_OF_RACE * best]
    return seconds
