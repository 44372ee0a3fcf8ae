"""Test helpers (factories, in-memory images, fakes); imported by tests only."""
