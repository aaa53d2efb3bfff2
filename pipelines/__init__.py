"""DVC stage scripts: each is a thin ``main()`` reading its section of ``params.yaml``."""
