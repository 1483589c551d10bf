"""``python -m speculum`` (also what ``torchrun -m speculum`` runs)."""

from speculum.cli import main

if __name__ == "__main__":
    main()
