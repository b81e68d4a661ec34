"""The messaging core: conversations, participants, messages, read state, realtime delivery."""
