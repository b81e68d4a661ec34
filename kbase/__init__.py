"""Knowledge base, robot and AI (KB-1 … KB-5). Registered so its schema is part of every tenant."""
