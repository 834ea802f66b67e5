"""How a suite is run: the plan of cells, the supervisor that starts and watches workers, the worker itself."""
