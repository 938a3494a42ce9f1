"""The command-line interface, and the configuration check it runs. The top layer: may import
anything in the core."""
