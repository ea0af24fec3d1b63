"""The engine on its worker thread: the bridge and what the operations docks ask of it."""
