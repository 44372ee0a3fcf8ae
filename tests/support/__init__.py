"""Test scaffolding: factories, in-memory images and datasets, fakes, tiny artifacts and the
whole-stack plugin (Redis, Celery workers). Imported by tests and benchmarks, never by the
product."""
