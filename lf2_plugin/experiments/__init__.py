"""Experiments made of ``tools/train_net.py`` runs: the runner the demo, the ablation and the mechanism benchmark
share (:mod:`.runs`), paired statistics (:mod:`.paired`), steps recorded across machines (:mod:`.record`) and the
mechanism benchmark (:mod:`.mechanism`)."""
