"""`make bench` = `python -m bench`: run every benchmark and write bench/results/*.json."""

from bench import tokens, transfers


def main() -> None:
    tokens.main()
    transfers.main([])


if __name__ == "__main__":
    main()
