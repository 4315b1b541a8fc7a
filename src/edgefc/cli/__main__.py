from edgefc.cli.main import main

main()
