"""A bench-only tenant app for ``bench/migrate_schemas.py``: one table the bench adds columns to.

Installed only by ``bench/migbench_settings.py``; its migrations are written by the bench into a
throwaway directory (``MIGRATION_MODULES``), so nothing of it reaches the product's migrations.
"""
