"""The HTTP server and its pages; it reads through the callables it is given and writes nothing."""
