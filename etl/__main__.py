"""`python -m etl` is the same as the `mamamia` command."""

from etl.cli import main

main()
