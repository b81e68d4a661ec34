"""The tickets REST API on a tenant's domain (docs/api.md §6), mounted at ``/api/v1/``."""

from tickets import api

app_name = "tickets"

urlpatterns = api.urlpatterns
