import os
import sys

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
for p in (HERE, os.path.join(ROOT, "examples")):
    if p not in sys.path:
        sys.path.insert(0, p)
