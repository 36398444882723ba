"""``python -m hairseg_edge``: the same command line as ``hairseg-edge``."""

from hairseg_edge.cli import main

if __name__ == "__main__":
    main()
