"""scores -> decisions: the allocator worker, one LP per send batch, decisions published exactly once.

Reads ``batch-control`` (1 partition), ``scores`` (keyed by batch_id) and the ids of
``candidates`` (keyed by user_id: which users a batch has, and what each could be sent) with a
``read_committed`` consumer and, for every batch whose window has closed, solves the
allocation LP, rounds it per user, decides the users it left (never scored) by the fallback
(``fallback``, ``fallback_batch``) and publishes, in ONE Kafka transaction, one ``decisions``
record per (batch, user), one ``allocation-reports`` record, the pending dead letters and the
consumer offsets. Downstream ``read_committed`` consumers therefore see each decision once, and
every user of a closed batch has one.

Why it is exactly once across crashes
-------------------------------------
- Offsets are committed inside the transaction that publishes the decisions. For each
  partition we commit the smallest offset of any record still held in memory for an undecided
  batch (else the position), so a crash never loses a buffered record (``OffsetTracker``).
- Committing below the position means a restarted worker re-reads records it has already
  used. Each commit therefore carries the true position as the offset's metadata string
  (``pos=N``, committed atomically with the offset). On (re)start, records below ``pos`` were
  fully handled by a committed transaction unless they belong to a batch that is still
  undecided; records of decided batches there are skipped silently (``skipped_replayed``),
  while a record of a decided batch *beyond* ``pos`` is a genuinely late record and goes to
  dead-letters ("scores for decided batch"). The exception: the scorers run at-least-once, so
  a user re-scored after their rebalance may reach us after the batch was decided; scores
  for a user this worker decided in one of its last ``DECIDED_USERS_KEPT`` batches are that
  replay and are skipped (``skipped_duplicates``).
- Which batches are decided is loaded once at startup by reading ``allocation-reports`` from
  the beginning (read_committed, until the end offsets), after ``init_transactions`` has
  fenced a zombie with the same ``transactional.id`` and aborted its open transaction.
- LP users are ordered by user_id (not arrival order, which depends on how the 4 scores
  partitions interleave), and the rounding generator is seeded by a hash of (seed, batch_id),
  so a batch re-decided after a crash gets the same decisions.
- On any transactional error we abort, drop all in-memory state and rewind the consumer to
  the committed offsets (the same path as a restart): simple, and correct by the above.
- A Kafka call that blocks past ``stuck_call_s`` (librdkafka can, when the coordinator moves)
  ends the process (``watchdog``): the same as a crash, and correct by the above.
- The candidates records are held like the scores (their offsets are committed only with their
  batch's decision), so a restarted worker knows every undecided batch's users again. The
  fallback's memory (the last LP's duals, item estimates) is folded from the committed reports,
  at start-up and after each commit, so a batch re-decided from the same records after a crash
  gets the same fallback.

"""
