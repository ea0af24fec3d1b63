"""Table models of the console: lazy QAbstractTableModels over snapshot numpy columns and logs."""
