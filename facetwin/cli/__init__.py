"""The ``facetwin`` command. One module per subcommand; see :mod:`facetwin.cli.main`."""
