"""Configuration keys added by the LF2 plugin.

Call :func:`add_lf2_config` right after ``fastreid.config.get_cfg()`` and before ``merge_from_file``
(the fast-reid project convention, see ``projects/FastAttr/fastattr/config.py``).
"""
from fastreid.config import CfgNode as CN


def add_lf2_config(cfg):
    """Add every key the plugin reads to ``cfg`` (in place) and return it."""
    _add_run_config(cfg)
    _add_model_config(cfg)
    _add_cluster_config(cfg)
    _add_data_config(cfg)
    return cfg


def _add_run_config(cfg):
    # Seed for python, numpy and torch in every process (fast-reid itself reseeds randomly on every run).
    # A negative value keeps fast-reid's behaviour: a fresh random seed, logged so the run can be repeated.
    cfg.SEED = -1


def _add_model_config(cfg):
    # MODEL.LF2.*: the LF2 meta-architecture, head, fusion module and losses (issue 4). Documented in docs/MODEL.md.
    cfg.MODEL.LF2 = CN()
    # K, the number of horizontal stripes (local branches, clustering levels 1..K); 0 = global-only mean teacher.
    cfg.MODEL.LF2.NUM_PARTS = 2
    # Expert layer input: "concat" = Linear(2C->C) on [GAP, GMP] (released code), "sum" = Linear(C->C) on GAP+GMP
    # (first upload).
    cfg.MODEL.LF2.EXPERT = "concat"
    # Pooling of the global branch, of the attended stripe descriptor Z_j and inside the Fusion Module:
    # "avg+max" (official code), "avg" (paper figure: GAP) or "max".
    cfg.MODEL.LF2.POOL = "avg+max"
    # gamma: weight of each stripe's triplet loss (paper's total loss; official 0.5).
    cfg.MODEL.LF2.PART_TRIPLET_WEIGHT = 0.5
    # Eval descriptor L2-normalised per view (official protocol normalises each view before the flip sum).
    cfg.MODEL.LF2.EVAL_NORMALIZE = False
    # Source checkpoints: also copy the source BNNeck into the global BN (official: the global BN starts fresh).
    cfg.MODEL.LF2.SOURCE_BNNECK_TO_GLOBAL_BN = False

    cfg.MODEL.LF2.TEACHER = CN()
    # alpha: EMA momentum cap, m = min(1 - 1/(step+1), alpha).
    cfg.MODEL.LF2.TEACHER.EMA_ALPHA = 0.999
    # Teacher BN statistics: "forward" = teacher forwarded in train mode on every batch (official), "ema" = teacher
    # always in eval mode, its BN buffers EMA'd from the student.
    cfg.MODEL.LF2.TEACHER.BN_UPDATE = "forward"

    cfg.MODEL.LF2.FUSION = CN()
    # False = "w/o FM" ablation: level j clusters the teacher's own pooled stripe j instead of fused features.
    cfg.MODEL.LF2.FUSION.ENABLED = True
    # r, channel-attention MLP reduction C -> C/r -> C (official 4).
    cfg.MODEL.LF2.FUSION.REDUCTION = 4
    # Weight of a triplet loss on the K+1 fused features with their own level's labels; 0 = official code (the
    # Fusion Module and channel attention get no gradient), > 0 = the paper's learnable Fusion Module.
    cfg.MODEL.LF2.FUSION.LOSS_WEIGHT = 0.0


def _add_cluster_config(cfg):
    # MODEL.LF2.CLUSTER.*: multi-level pseudo-label generation (issue 5).
    cfg.MODEL.LF2.CLUSTER = CN()


def _add_data_config(cfg):
    # DATASETS.*: plugin additions to fast-reid's dataset keys.
    pass
