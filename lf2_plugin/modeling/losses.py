"""The two losses of LF2 exactly as the official code computes them.

fast-reid's own functions are close but not equal, hence these:

- ``fastreid.modeling.losses.cross_entropy_loss(eps)`` smooths towards ``eps/(k-1)`` on the wrong classes and
  ``1-eps`` on the right one; the official ``CrossEntropyLabelSmooth`` (Szegedy et al.) uses
  ``(1-eps)·onehot + eps/k``.
- ``fastreid.modeling.losses.triplet_loss(margin=0)`` is the same soft-margin batch-hard loss, but computes
  ``log(1+exp(x))`` without overflow protection and then silently switches to a hard margin-0.3 loss when it
  overflows; the official ``SoftTripletLoss(margin=0)`` (a log-softmax) never does.
"""

import torch.nn.functional as F

from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from fastreid.modeling.losses.triplet_loss import hard_example_mining
from fastreid.modeling.losses.utils import cosine_dist, euclidean_dist


def label_smooth_cross_entropy(logits, targets, eps=0.1):
    """Official ``CrossEntropyLabelSmooth``: ``mean_i sum_c -q_ic log p_ic``, ``q = (1-eps)·onehot + eps/k``.

    A negative ``eps`` keeps fast-reid's meaning (adaptive smoothing, ``MODEL.LOSSES.CE.ALPHA``) and is delegated
    to fast-reid.
    """
    if eps < 0:
        return cross_entropy_loss(logits, targets, eps)
    log_probs = F.log_softmax(logits, dim=1)
    smooth = -log_probs.mean(dim=1)  # = sum_c -(1/k) log p_c
    true_class = -log_probs.gather(1, targets.view(-1, 1)).squeeze(1)
    return ((1 - eps) * true_class + eps * smooth).mean()


def batch_hard_triplet_loss(features, targets, margin=0.0, norm_feat=False, hard_mining=True):
    """Batch-hard triplet loss (Hermans et al.) on un-normalised Euclidean distances by default.

    ``margin == 0`` with hard mining is the official ``SoftTripletLoss(margin=0)``:
    ``mean_i log(1 + exp(d(a_i, p_i) - d(a_i, n_i)))`` (paper's softmax triplet loss), computed stably. Other
    settings are fast-reid's ``triplet_loss`` (``MODEL.LOSSES.TRI.*``).
    """
    if margin > 0 or not hard_mining:
        return triplet_loss(features, targets, margin, norm_feat, hard_mining)
    dist = cosine_dist(features, features) if norm_feat else euclidean_dist(features, features)
    same = targets.view(-1, 1).eq(targets.view(1, -1)).float()
    dist_ap, dist_an = hard_example_mining(dist, same, 1 - same)
    return F.softplus(dist_ap - dist_an).mean()
