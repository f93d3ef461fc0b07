from discoveryd.cli import main

if __name__ == "__main__":  # DNS worker processes (spawn) re-import this module
    main()
