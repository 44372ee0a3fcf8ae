"""Developer tooling: what `make run`, the scripts and the tests start or build beside the
product (a local Redis, SeaweedFS, Celery workers, test networks and their central host,
DICOM files, tiny artifacts, users with API tokens) and how the scripts write their
reports. It may import the product; the product never imports it, and its image leaves it
out (docker/Dockerfile)."""
