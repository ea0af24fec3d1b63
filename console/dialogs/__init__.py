"""The console's dialogs: opening scenarios and stores, exporting tables and charts."""
