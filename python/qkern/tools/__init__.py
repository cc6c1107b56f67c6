"""Command-line tools of qkern (each module: add_arguments(parser) and main(args))."""
