"""Several `fluxroute serve --http` processes on one store, behaving as one service (issue 18)."""
