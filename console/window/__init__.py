"""The main window and the operator's side of it (login, the operations docks)."""
