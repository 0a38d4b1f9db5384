"""Replay: logged decisions -> what another policy would have earned and spent (off-policy evaluation).

The allocator logs, beside every decision and in the same transaction, its context on
``decision-contexts`` (``streams.decide.contexts``): every candidate's features, propensity, x and
calibrated means. A replay reads a namespace's logs from Kafka, bounded and read_committed
(:mod:`.read`), joins decisions with their contexts, the batches' constraints and the feedback
(:mod:`.log`), computes each target policy's send probability of every logged pair (:mod:`.targets`:
``logged``, ``nn_lp``, ``greedy``, ``uniform``, ``bts``) and estimates its reward and unsubscriptions
per decision with every estimator of ``evaluation.ope`` and bootstrap intervals (:mod:`.estimate`).
A logged dataset (the Open Bandit Dataset, :mod:`.obd`) is replayed directly or published onto
Kafka in the pipeline's schemas first (:mod:`.publish`). The command line is ``banditlp replay``
(``streams.cli.replay``).

Modules: ``errors`` (:class:`~.errors.ReplayInputError`), ``records`` (typed context and decision
values), ``log``, ``read``, ``targets``, ``estimate``, ``obd``, ``publish``.
"""
