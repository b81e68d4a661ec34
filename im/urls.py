"""The team-messaging REST API on a tenant's domain (docs/api.md). Session-cookie auth."""

from im import api, api_files, api_search

app_name = "im"

urlpatterns = [
    # conversations and groups (im/api.py)
    *api.urlpatterns,
    # files and stickers (im/api_files.py)
    *api_files.urlpatterns,
    # search and history (im/api_search.py)
    *api_search.urlpatterns,
]
