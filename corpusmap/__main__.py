"""`python -m corpusmap` = the `corpusmap` command."""
from corpusmap.cli import main

if __name__ == "__main__":
    main()
