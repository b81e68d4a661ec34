"""Customer service: widget channels, visitors, workgroups, agents' service state, sessions,
routing and the waiting queue, the inbox and the widget."""
