"""Every state change of the messaging core, one module per concern; callers import the module
they need (nothing is re-exported here, so an import names where the function lives):

- :mod:`~im.services.messages`: message validation, the one send path (``message_send``), system
  lines, recall, a message's ``meta``;
- :mod:`~im.services.conversations`: conversations and participants (create, add, remove, rename,
  close), ``conversation.added``, a member's own settings;
- :mod:`~im.services.receipts`: read/delivered receipts and typing;
- :mod:`~im.services.groups`: 1:1 chats and groups.

Senders (``Sender``, ``SYSTEM``, ``robot_sender``) live below the services in :mod:`im.senders`.
Imports inside the package go one way: ``groups`` → ``messages`` → ``conversations``; ``receipts``
stands alone.
"""
