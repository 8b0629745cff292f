from softphone.cli import main

if __name__ == "__main__":  # the media process is spawned: it must not run the CLI again
    main()
