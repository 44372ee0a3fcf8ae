"""Test scaffolding: factories, in-memory images and datasets, fakes, reports written through
the service, and the pytest plugins (the whole stack: Redis, Celery workers; SeaweedFS). What
scripts share with the tests lives in devtools/. Imported by tests only, never by the
product or the scripts."""
