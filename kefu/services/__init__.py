"""Customer-service state changes, one module per concern (see docs/architecture.md, "Routing
(kefu)"). Import the module you need (``from kefu.services import routing``); this package
re-exports nothing, so importing one part never loads the others."""
