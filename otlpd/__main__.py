from otlpd.cli import main

raise SystemExit(main())
