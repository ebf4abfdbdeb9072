"""flowguard's topic contract: topic specs and the models of every record on them."""
