"""`l2emg studio`: a local web page over a trained run — type an emotional description, watch the
motion in 3D, see which scenario experts answered, compare methods and stream steps, read the report.

    backend.py   what the page does, without the page: the run's finished methods, cached generators,
                 generation with timings, explanations, comparisons, downloads (BVH, .npy, MP4)
    viewer.py    the interactive three.js skeleton (an HTML page from (T, 22, 3) joints)
    charts.py    the "Why this motion" bar charts (gate weights, emotion probabilities, EPI's route)
    report.py    the run's Table-2 rows, heatmaps and sample grids, as the report already makes them
    app.py       the Gradio Blocks page and its event handlers (errors become a message, never a trace)
    static/      three.js (npm package `three`, MIT), vendored: no CDN at run time

Gradio is imported by `app.py` only, so `l2emg --help` and the backend stay fast to import.
"""
