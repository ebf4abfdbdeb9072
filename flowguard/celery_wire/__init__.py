"""What flowguard understands of Celery's wire format, in one place.

- :mod:`~flowguard.celery_wire.events`: a raw Celery event dict (as ``app.events.Receiver``
  hands it over, or a recorded JSONL line) -> a :mod:`topics.events` model;
- :mod:`~flowguard.celery_wire.call_args`: the ``args``/``kwargs`` reprs -> the exact values a
  retry sends again;
- :mod:`~flowguard.celery_wire.exceptions`: the exception repr -> its type and message.

Pure (no I/O), and shared: the bridge translates and re-sends with it, the engine, replay and the
Test button read the same events with it. It imports only :mod:`flowguard.errors` and
:mod:`topics`, so the bridge can use it without depending on the rest of flowguard.
"""
