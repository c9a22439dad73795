"""Augmenters: back-translation (CTranslate2), paraphrasing (vLLM), EDA (rule-based); shared output in common."""
