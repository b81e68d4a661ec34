"""Organisation: per-tenant users (the AUTH_USER_MODEL) and their roles."""
