from discoveryd.cli import main

main()
