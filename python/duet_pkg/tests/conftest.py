# The duet package under test: the source tree's python/duet_pkg over the build tree's
# libduet.so (DUET_BUILD_DIR, default build/), unless DUET_USE_INSTALLED=1 (then the installed
# package and its own library are imported).
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG))
BUILD = os.path.abspath(os.environ.get("DUET_BUILD_DIR", os.path.join(REPO, "build")))
if os.environ.get("DUET_USE_INSTALLED") != "1":
    sys.path.insert(0, PKG)
    os.environ.setdefault("DUET_LIBRARY", os.path.join(BUILD, "libduet.so"))
