"""lsap's ground floor: errors, atomic writes, hashing, caches, provenance, config values, version.

Every other package may import these modules; they import nothing of lsap (``docs/architecture.md``,
enforced by ``tests/test_architecture.py``).
"""
