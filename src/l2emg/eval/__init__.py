"""Evaluation: the trained evaluator (text/motion embeddings + emotion classifier), the
text-to-motion metrics, the continual metrics over performance matrices, and reports.

    evaluator/            Evaluator, train_evaluator, Evaluator.from_pretrained
    evaluate.py           evaluate_motions, reference_row (and the held-out emotion-transfer measure)
    metrics.py            FID, R-Precision, MM-Dist, Diversity, MultiModality, weighted F1, mean ± CI
    continual_metrics.py  performance matrices -> AF, AR, AD, AMM, AWF, FR, BWT, FWT
    report.py             heatmaps (the paper's Figure 3) and Markdown rows (Table 2)
    text_encoder.py       the frozen all-MiniLM-L6-v2 sentence encoder
"""
