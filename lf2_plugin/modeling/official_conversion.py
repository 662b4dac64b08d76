"""An official LF2 checkpoint file converted into a fast-reid checkpoint file of this plugin
(``tools/convert_official_lf2.py``; the key mapping is :func:`.checkpoint.convert_official_state_dict`)."""

import torch

from .checkpoint import convert_official_state_dict, load_checkpoint_file

__all__ = ["convert_official_checkpoint", "conversion_report"]


def convert_official_checkpoint(in_path, out_path):
    """Convert ``in_path`` to ``out_path``; returns the conversion info dict."""
    state_dict, info = convert_official_state_dict(load_checkpoint_file(in_path))
    torch.save({"model": state_dict}, out_path)
    return info


def conversion_report(out_path, info):
    """What was written, the tensors dropped and the config overrides the converted checkpoint needs."""
    lines = [f"wrote {out_path} ({info['layout']} layout)"]
    if info["dropped"]:
        lines.append(
            f"dropped {len(info['dropped'])} tensors the LF2 forward never uses: "
            f"{sorted({k.rsplit('.', 1)[0] for k in info['dropped']})}"
        )
    if info["layout"] == "lf2":
        lines.append(
            "config for this checkpoint: MODEL.META_ARCHITECTURE LF2 MODEL.LF2.NUM_PARTS 2 "
            f"MODEL.HEADS.NUM_CLASSES {info['num_classes']} MODEL.BACKBONE.FEAT_DIM {info['feat_dim']} "
            f"MODEL.LF2.EXPERT {info['expert']}"
        )
    else:
        lines.append(
            "config for this checkpoint: MODEL.META_ARCHITECTURE LF2SourceBaseline (configs/Base-LF2-source.yml)"
        )
    return "\n".join(lines)
