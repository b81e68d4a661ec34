"""``manage.py migrate`` is ``migrate_schemas`` (as in django-tenants), template schema included."""

from tenants.management.commands.migrate_schemas import Command

__all__ = ["Command"]
