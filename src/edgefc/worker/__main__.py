from edgefc.worker.main import main

main()
