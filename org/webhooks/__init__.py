"""Signed webhooks (INT-3, docs/webhooks.md): tenant admins subscribe URLs to events, the
services of kefu and tickets emit them after commit, Celery delivers them in order per
conversation, signed with HMAC-SHA256, through the SSRF-guarded client (weiyu/outbound.py).

A Django app of its own (label ``webhooks``) inside the ``org`` layer, so that every app that
emits events (im, kefu, tickets sit above org) may import it; it imports nothing above org, and
each emitter builds its event's payload itself."""
