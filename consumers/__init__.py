"""hookbus consumers: one module per consumer, one client per downstream API, local API sandboxes."""
