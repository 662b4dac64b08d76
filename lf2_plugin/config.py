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
    # Iterations per epoch, whatever the data size (official: 400 in adaptation, 200 in the source stage);
    # 0 = len(train set) // IMS_PER_BATCH, as fast-reid's own trainers always do. Read by LF2Trainer and
    # SourceTrainer.
    cfg.SOLVER.ITERS_PER_EPOCH = 0
    # Source stage (SourceTrainer): the warm-up factor changes once per epoch, as the official WarmupMultiStepLR;
    # False = fast-reid's per-iteration ramp.
    cfg.SOLVER.WARMUP_PER_EPOCH = False
    # Reset the optimizer state (Adam moments) after every clustering, as the official code re-creates Adam.
    cfg.SOLVER.RESET_OPTIMIZER_EACH_EPOCH = False
    # Test metric that picks model_best.pth in SourceTrainer and LF2Trainer: "mAP" (official) or fast-reid's
    # "metric" = (mAP + Rank-1) / 2 (any key ReidEvaluator reports).
    cfg.TEST.BEST_METRIC = "mAP"
    # Keep only the newest N periodic checkpoints (model_<epoch>.pth) on disk; model_final, model_best and
    # model_interrupted always stay. 0 keeps every one, as fast-reid does.
    cfg.SOLVER.CHECKPOINT_KEEP = 0
    # Split every BN layer's training batch into this many chunks with their own statistics: 2 reproduces the
    # official 2-GPU DataParallel run (2 x 32 images per BN) on one device. 1 = plain BN.
    cfg.MODEL.BN_SPLITS = 1


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
    # Eval descriptor of LF2 and LF2SourceBaseline L2-normalised per view, before the flip average (official).
    cfg.MODEL.LF2.EVAL_NORMALIZE = True
    # Teacher features in the eval descriptor: "concat" = [g, f_1..f_K] (paper), "global" = g, "parts" = [f_1..f_K]
    # (the latter two to see what each branch contributes to retrieval).
    cfg.MODEL.LF2.EVAL_FEATURE = "concat"
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
    # MODEL.LF2.CLUSTER.*: multi-level pseudo-label generation; see docs/CLUSTERING.md.
    cfg.MODEL.LF2.CLUSTER = default_cluster_config()


def default_cluster_config():
    """A new ``MODEL.LF2.CLUSTER`` node holding every default (also the defaults of ``lf2_plugin.clustering``
    when it is given a partial dict)."""
    cl = CN()
    # Algorithm of every level: "kmeans" (sklearn MiniBatchKMeans, the paper), "faiss_kmeans" or "dbscan".
    cl.ALGORITHM = "kmeans"
    # Per-level override, index 0 = global, 1.. = parts (e.g. ["dbscan", "kmeans", "kmeans"]); empty = ALGORITHM.
    cl.LEVEL_ALGORITHMS = []
    # k of the k-means variants (LF2: 700 for Duke->Market, 900 for Market->Duke).
    cl.NUM_CLUSTERS = 700
    # Fewest usable clusters; 0 = identities per batch, SOLVER.IMS_PER_BATCH // DATALOADER.NUM_INSTANCE.
    cl.MIN_CLUSTERS = 0
    # Seed of k-means / IVF training (the hook may add the epoch).
    cl.SEED = 1
    # Subtract each camera's mean feature (per level) before clustering, then L2-normalise again: removes what a
    # camera adds to all its images (colour rendition, background). Not in LF2; helps where cameras differ strongly
    # (docs/CLUSTERING.md). The classifier is still initialised from member means of the model's own features.
    cl.CAMERA_CENTERING = False

    cl.KMEANS = CN()
    # sklearn MiniBatchKMeans max_iter, batch_size (LF2: 100, 300).
    cl.KMEANS.MAX_ITER = 100
    cl.KMEANS.BATCH_SIZE = 300
    # MiniBatchKMeans init_size of the global level and of the part levels (LF2: 1500, 900).
    cl.KMEANS.INIT_SIZE = 1500
    cl.KMEANS.PART_INIT_SIZE = 900
    # MiniBatchKMeans n_init (3 = the default of sklearn 1.0.2, which LF2 pinned).
    cl.KMEANS.N_INIT = 3
    # Classifier rows after k-means: "kmeans" = the L2-normalised k-means centres, k labels kept as they are,
    # empty clusters included (official); "mean" = L2-normalised member mean of each non-empty cluster, renumbered.
    cl.KMEANS.CENTROIDS = "kmeans"
    # faiss.Kmeans Lloyd iterations and training points per centroid (subsample above k * this).
    cl.KMEANS.FAISS_NITER = 10
    cl.KMEANS.FAISS_MAX_POINTS_PER_CENTROID = 16
    # faiss.Kmeans start: "kmeans++" (sklearn kmeans_plusplus seeds on a sample, as MiniBatchKMeans) or "random".
    cl.KMEANS.FAISS_INIT = "kmeans++"
    # Sample size of the k-means++ seeding (0 = max(3 k, 1500)).
    cl.KMEANS.FAISS_INIT_SIZE = 0

    cl.DBSCAN = CN()
    # DBSCAN radius on the Jaccard distance (must be < 1) and core-point neighbourhood size.
    cl.DBSCAN.EPS = 0.6
    cl.DBSCAN.MIN_SAMPLES = 4
    # k-reciprocal neighbourhood sizes of the Jaccard distance.
    cl.DBSCAN.K1 = 30
    cl.DBSCAN.K2 = 6
    # True: each DBSCAN outlier becomes a singleton cluster; False: label -1 (dropped from training).
    cl.DBSCAN.KEEP_OUTLIERS = False

    cl.KNN = CN()
    # k-NN search of the Jaccard distance: "exact" (faiss IndexFlatL2, as fast-reid), approximate "grouped_ivf"
    # (exact search inside nearby k-means cells), "ivf" (faiss IndexIVFFlat) or "hnsw" (faiss IndexHNSWFlat).
    cl.KNN.MODE = "exact"
    # IndexHNSWFlat M, efConstruction, efSearch.
    cl.KNN.HNSW_M = 32
    cl.KNN.HNSW_EF_CONSTRUCTION = 40
    cl.KNN.HNSW_EF_SEARCH = 128
    # Cells of "ivf" / "grouped_ivf" (0 = automatic from N) and cells visited per query.
    cl.KNN.IVF_NLIST = 0
    cl.KNN.IVF_NPROBE = 16
    # grouped_ivf: a cell also searches every cell one of its points has among its this many nearest centroids.
    cl.KNN.IVF_QUERY_PROBES = 4
    # Use faiss GPU indexes when faiss sees a GPU (falls back to CPU on any GPU error).
    cl.KNN.USE_GPU = True
    # faiss OpenMP threads (0 = leave faiss's default).
    cl.KNN.NUM_THREADS = 0

    cl.FALLBACK = CN()
    # Re-clustering of a degenerate DBSCAN result: "faiss_kmeans", "kmeans" or "none" (warn only).
    cl.FALLBACK.ALGORITHM = "faiss_kmeans"
    # k of the fallback (0 = NUM_CLUSTERS); raised to the minimum cluster count if below it.
    cl.FALLBACK.NUM_CLUSTERS = 0
    # A cluster holding more than this fraction of all points is a "giant cluster".
    cl.FALLBACK.GIANT_CLUSTER_FRACTION = 0.5
    # On a giant cluster: "fallback" (re-cluster) or "warn" (keep the labels).
    cl.FALLBACK.ON_GIANT_CLUSTER = "fallback"

    # Pictures of the pseudo labels every N epochs (0 = never), in OUTPUT_DIR/clusters/: per level a montage of
    # clusters as rows of member images, borders coloured by true identity where the dataset has one, and the
    # cluster-size histograms of all levels.
    cl.VIS_EVERY = 0
    # Montage rows (the largest cluster, then evenly down the size ranking) and member images shown per row.
    cl.VIS_CLUSTERS = 8
    cl.VIS_MEMBERS = 12
    return cl


def _add_data_config(cfg):
    # DATASETS.*: plugin additions to fast-reid's dataset keys.
    # Source stage: name of a target dataset whose train images are forwarded (no loss) after every step so the
    # BN statistics adapt to the target, as the official source_pretrain.py does. "" = off.
    cfg.DATASETS.TARGET_BN_ADAPT = ""
    # Images that do not decode: False = stop before training and name them; True = leave them out (counted, logged).
    cfg.DATASETS.SKIP_UNREADABLE_IMAGES = False
    # Random-erasing boxes of the LF2 adaptation loaders: "official" (area U(0.02, 0.4), aspect ratio uniform in
    # [0.3, 1/0.3], as the official code) or "torchvision" (fast-reid's: area U(0.02, 0.33), log-uniform aspect).
    cfg.INPUT.REA.STYLE = "official"
