"""``python -m deepplantphenomics``: the ``dpp`` command line, for when the script is not on PATH."""

from deepplantphenomics.cli import main

if __name__ == "__main__":
    main(prog_name="dpp")
