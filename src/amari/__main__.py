from amari.cli import main

raise SystemExit(main())
