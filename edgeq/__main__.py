"""`python -m edgeq ...` is `edgeq ...`."""

from edgeq.cli import main

if __name__ == "__main__":
    main(prog_name="edgeq")
