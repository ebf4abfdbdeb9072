"""A small Celery app with tasks that really fail: for the demo, the recordings and the tests."""
