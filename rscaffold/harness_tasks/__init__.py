"""lm-evaluation-harness task files for the project's benchmarks (see :mod:`rscaffold.harness`).

Each ``<benchmark>.yaml`` is one task, ``rscaffold_<benchmark>``; the ``_*_template_yaml`` files are
what they share. Run one by its path, which also registers the ``rscaffold`` model::

    lm_eval --model rscaffold --model_args pretrained=STUDENT_DIR --tasks rscaffold/harness_tasks/gsm8k.yaml
"""
