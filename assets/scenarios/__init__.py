"""Built-in scenarios shipped with the console."""
