"""Prices and liquidity: price paths, index, mark, settlement windows and the depth book."""
