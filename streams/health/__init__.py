"""The health worker: exploration and model health per closed batch on the ``health`` topic.

* ``batches`` — what is held of a batch until it closes, and the monitor's view of it (no Kafka);
* ``worker`` — the consumer of decisions, decision contexts, feedback and allocation reports
  that publishes one ``health`` record per batch and logs its alarms.

The metrics and alarms themselves are :mod:`evaluation.health`'s.
"""
