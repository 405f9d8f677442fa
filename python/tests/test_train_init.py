"""train.py --init-from: continue training from an exported model directory (no last.ckpt)."""
import os

import pytest
import torch

from duet_ref.checkpoint import load_model, save_model
from duet_ref.train import init_from_export, main as train_main
from helpers import load_cfg, REPO


class _Args:
    lr_backbone, lr_refiner = 1e-4, 5e-4


def _tiny_export(tmp_path):
    from duet_ref.model import DuetModel
    torch.manual_seed(3)
    model = DuetModel(load_cfg("tiny-demo"))
    out = tmp_path / "export"
    save_model(model, str(out))
    return model, str(out)


def test_init_from_export_copies_weights_into_model_and_ema(tmp_path):
    src, out = _tiny_export(tmp_path)
    model, ema, opt, cfg = init_from_export(out, _Args())
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
        assert torch.equal(ema.state_dict()[k], v), k
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in ema.parameters())
    assert cfg["backbone"] == src.cfg["backbone"]
    assert len(opt.param_groups) >= 1


def test_init_from_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="--init-from"):
        init_from_export(str(tmp_path / "missing"), _Args())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--init-from"):
        init_from_export(str(bad), _Args())


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="needs dataset-fashion-mnist")
def test_two_steps_from_an_export_then_resume(tmp_path):
    src, out = _tiny_export(tmp_path)
    run = str(tmp_path / "run")
    common = ["--config", os.path.join(REPO, "configs", "tiny-demo.json"), "--out", run, "--batch", "4",
              "--log-every", "1", "--threads", "1", "--text-aux", "0", "--text-pretrain-steps", "0",
              "--init-from", out]
    train_main(common + ["--max-steps", "2"])
    st = torch.load(os.path.join(run, "last.ckpt"))
    assert st["step"] == 2 and st["ema_warm"] and st["text_pretrained"]
    # EMA at decay 0.999 from the export: still close to the exported weights, not reset
    ema = st["ema"]
    k = next(k for k, v in src.state_dict().items() if v.is_floating_point() and v.numel() > 16)
    assert torch.allclose(ema[k], src.state_dict()[k], atol=1e-3)
    train_main(common + ["--max-steps", "3"])  # resumes (the --init-from is ignored)
    assert torch.load(os.path.join(run, "last.ckpt"))["step"] == 3
