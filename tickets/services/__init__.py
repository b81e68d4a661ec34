"""Every state change of tickets, one module per concern; callers import the module they need
(nothing is re-exported here, so an import names where the function lives):

- :mod:`~tickets.services.tickets`: create, update, bulk update, merge, split, watch, a visitor's
  left message, a deleted staff member's tickets released;
- :mod:`~tickets.services.comments`: replies and internal notes, their files, what a public reply
  does to status, SLA clocks and e-mail;
- :mod:`~tickets.services.clocks`: the SLA clocks of one ticket (start, pause, meet, re-target),
  called inside the services above;
- :mod:`~tickets.services.sla`: the scanner acting on due clocks (warn, breach, escalate);
- :mod:`~tickets.services.notifications`: staff notifications, stored then pushed;
- :mod:`~tickets.services.email`: the reply e-mail, scheduled after commit and sent by a worker;
- :mod:`~tickets.services.events`: the ``ticket.updated`` event;
- :mod:`~tickets.services.config`: categories and SLA policies edited in the back office.

Imports inside the package go one way: ``tickets``/``comments`` → ``clocks``, ``events``,
``notifications``, ``email``; ``comments`` → ``tickets``; ``sla`` → ``notifications``.
"""
