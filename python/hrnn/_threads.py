"""How many threads hrnn's Rust side may use.

Every parallel step — CSV parsing, filtering, sessionizing, :meth:`Recommender.recommend_batch`
and the scan of a large catalogue (chunks of 32k items, when the other threads would take at
least one whole chunk) in :meth:`Recommender.recommend` — runs on one pool of threads: by default
one per core (or ``RAYON_NUM_THREADS``). Results do not depend on the number of threads.
"""

from __future__ import annotations

import operator

from hrnn import _hrnn

__all__ = ["get_num_threads", "set_num_threads"]


def set_num_threads(n: int) -> None:
    """Uses ``n`` threads (≥ 1) for hrnn's parallel work from now on, in every Python thread.

    Like ``torch.set_num_threads``: ``1`` makes each call single-threaded (for example when many
    requests are served concurrently, one per core).
    """
    count = operator.index(n)
    if count < 1:
        raise ValueError(f"set_num_threads: expected at least 1 thread, found {count}")
    _hrnn.set_num_threads(count)


def get_num_threads() -> int:
    """The number of threads hrnn's parallel work uses."""
    return _hrnn.get_num_threads()
