"""Tenants: companies using Weiyu, each in its own PostgreSQL schema (TEN-1, TEN-2)."""
