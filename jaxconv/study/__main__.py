"""`python -m jaxconv.study ...`: see jaxconv/study/cli.py."""

import sys

from jaxconv.study.cli import main

if __name__ == '__main__':
    sys.exit(main())
