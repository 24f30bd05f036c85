from sqlite_ha.cli import main

main()
