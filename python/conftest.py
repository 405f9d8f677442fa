# Makes `duet_ref` importable when pytest is run from python/ (or the repo root with -c python/pytest.ini).
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

torch.set_num_threads(1)  # shared 2-core machine; also keeps results deterministic
