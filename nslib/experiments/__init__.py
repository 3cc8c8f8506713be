"""The course's experiments, one module each, run by ``python -m nslib reproduce``.

Each module has ``run(ctx) -> Result``: it computes, and returns its tables, figures and
one-sentence finding; ``nslib.reproduce`` caches, writes the files and the report::

    context                    Context (what a run uses), Result, MODELS, pgd_inputs
    models                     the four models, their recipes and ``retrain`` (reproduce --full)
    attacks                    the standard model under FGSM and PGD-40
    sensitivity                E1 layer sensitivity, E2 per-neuron distributions
    ablation                   E3 stabilising / deactivating top-k, random-k, bottom-k neurons
    feature_maps               E4 the most sensitive neurons' feature maps
    robustness                 E5 SNS vs baselines under a suite of attacks
    sensitivity_vs_robustness  E6 sensitivity against robust accuracy over training
    sns_knobs                  E7 SNS's lambda, k and constrained layers
"""
