"""Speed and memory benchmarks of the plugin: pseudo-label clustering against the reference pipeline
(:mod:`.clustering`) and the cost of an LF2 training iteration against fast-reid's Baseline (:mod:`.training`)."""
