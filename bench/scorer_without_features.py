"""``banditlp ARGS`` whose scorer leaves the scored items' ``features`` empty: the comparison arm of
``bench/bench_pipeline.py --feature-arms`` (the deployed scorer always copies them).

The processors' score agent calls ``streams.score.batch.score_records``; this entry point binds
its ``copy_features=False`` before the command line runs, and changes nothing else.

    python bench/scorer_without_features.py worker processors --seed 0
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

from streams.cli.app import app  # noqa: E402
from streams.processors import agents  # noqa: E402
from streams.score.batch import score_records  # noqa: E402

agents.score_records = functools.partial(score_records, copy_features=False)

if __name__ == "__main__":
    app()
