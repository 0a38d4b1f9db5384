"""A seeded fuzzer of the pipeline's input records (issue 18, part 4).

- ``rules``: what makes a record of each input subject invalid (the workers' contract).
- ``mutations``: damage to a decoded value (a rule broken, still valid Avro) and to wire bytes.
- ``fuzzer``: ``Fuzzer.records(subject, base, n)``: ``n`` invalid records from valid ones,
  each checked against fastavro alone and keyed so its dead letter can be found.

``tests/integration/test_fuzz.py`` sends 1,000 of them per input topic into running workers and
checks that each reaches dead-letters with a reason and that no worker exits.
"""

from streams.fuzz.fuzzer import Fuzzer, FuzzRecord
from streams.fuzz.rules import RULES, FieldRule

__all__ = ["RULES", "FieldRule", "FuzzRecord", "Fuzzer"]
