"""The tuner in the streams: the parameter distribution on its compacted topic, and the live tuner job.

- ``streams.tune.distribution``: arms to the ``parameter-distribution`` value and back, reading an
  experiment's newest distribution from the topic, and publishing the next one (version + 1, its
  layout relaid out from the last one's so that few users change arm).
- ``streams.tune.job``: each period, the per-arm ``metrics`` read so far fitted by ``models.tuner``,
  and the distribution it gives published.

The scorer's side (each user served the arm its hash falls in) is ``streams.score.parameter_feed``.
"""
