"""`python -m bench.durable RECORDING URL BIND WORKERS`: serve the durable yardstick."""

from bench.durable.serve import main

if __name__ == "__main__":
    main()
