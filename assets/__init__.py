"""Built-in assets: scenarios, style sheets and icons."""
