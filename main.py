"""marc command line: ``python main.py {fit,validate,test,predict} --config configs/STAGE.yaml``."""

from __future__ import annotations

from marc.cli import MARCCLI


def main(args: list[str] | None = None) -> MARCCLI:
    """Run the LightningCLI on ``args`` (``sys.argv`` when None); tests call this."""
    return MARCCLI(args=args)


if __name__ == "__main__":
    main()
