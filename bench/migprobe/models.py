"""The table of the bench's ``AddField`` case; its columns beyond ``label`` exist only in the
migrations the bench writes (bench/migrate_schemas.py)."""

from django.db import models


class Probe(models.Model):
    label = models.CharField(max_length=32, default="")

    def __str__(self) -> str:
        return self.label
