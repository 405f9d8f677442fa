import os

from duet_ref import config as config_mod

PY_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
REPO = os.path.normpath(os.path.join(PY_DIR, ".."))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def load_cfg(name):
    return config_mod.load(os.path.join(REPO, "configs", f"{name}.json"))
