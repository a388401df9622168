"""`make bench` = `python -m bench`: run every benchmark and write bench/results/*.json."""

from bench import pages, tokens, transfers


def main() -> None:
    tokens.main()
    transfers.main([])
    pages.main([])


if __name__ == "__main__":
    main()
