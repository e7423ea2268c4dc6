from facetwin.cli.main import main

raise SystemExit(main())
