from geodns.cli import main

raise SystemExit(main())
