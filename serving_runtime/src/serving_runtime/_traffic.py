"""Which version answers a request that names none, in an experiment: split at the weights.

With a routing key, the choice is a function of the model, the key and the weights alone (a
blake2b hash, never Python's per-process `hash()`), so every worker of every pod sends one key
to one version while the weights stay. The versions take bands of [0, 1) in version order, each
as wide as its share; a key falls at one point of it. Growing the last version's weight (the
usual candidate, e.g. v2 from 10 to 50) widens its band downwards only: keys that reached it
still do. Without a key, the point is random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

_POINTS = 1 << 64  # the hash is read as a point of [0, 2**64): a band is a share of that


def choose(model_id: str, shares: Mapping[str, int], key: str | None) -> str:
    """The version (a key of `shares`, all weights above 0) that answers this request."""
    total = sum(shares.values())
    if key is None:
        point = random.randrange(_POINTS)
    else:
        digest = hashlib.blake2b(f"{model_id}\0{key}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big")
    # The first version whose band ends past the point: point / 2**64 < cumulative / total.
    cumulative = 0
    chosen = ""
    for version, weight in shares.items():
        cumulative += weight
        chosen = version
        if point * total < cumulative * _POINTS:
            break
    return chosen
